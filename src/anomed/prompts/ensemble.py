"""The hand-crafted prompt ensemble of WinCLIP / APRIL-GAN / MVFA: state words x templates.

`TEMPLATES` are the 35 sentences MVFA's `encode_text_with_prompt_ensemble` (utils.py) uses, in
its order: CLIP's ImageNet photo templates and WinCLIP's "there is a {} in the scene." family.
(The reference's prompt.py also defines a 22-sentence list with "... for visual inspection." and
"... for anomaly detection."; its ensemble never reads it.) 7 normal x 35 = 245 and
5 abnormal x 35 = 175 sentences an organ.
"""

from __future__ import annotations

NORMAL_STATES = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ABNORMAL_STATES = (
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
TEMPLATES = (
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a photo of my {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)


def ensemble_texts(organ: str) -> tuple[list[str], list[str]]:
    """Normal and abnormal sentences for an organ word ("brain", "retinal OCT"): every state in
    every template, state-major as in the reference (7 x 35 and 5 x 35)."""
    if not organ.strip():
        raise ValueError("the organ word must not be empty")

    def fill(states: tuple[str, ...]) -> list[str]:
        # replace, not format: an organ word with braces must not be read as a field
        return [t.replace("{}", s.replace("{}", organ)) for s in states for t in TEMPLATES]

    return fill(NORMAL_STATES), fill(ABNORMAL_STATES)
