"""The hand-crafted prompt ensembles of WinCLIP / APRIL-GAN / MVFA: state words x templates.

`TEMPLATES` are the 35 sentences MVFA's `encode_text_with_prompt_ensemble` (utils.py) uses, in
its order: CLIP's ImageNet photo templates and WinCLIP's "there is a {} in the scene." family.
(The reference's prompt.py also defines a 22-sentence list with "... for visual inspection." and
"... for anomaly detection."; its ensemble never reads it.) 7 normal x 35 = 245 and
5 abnormal x 35 = 175 sentences an organ.

`WINCLIP_*` is the WinCLIP paper's list as anomalib implements it (the WinCLIP implementation
users compare with): 7 normal and 4 abnormal states x 21 templates (one of them listed twice,
kept: it weighs the raw mean).
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


WINCLIP_ABNORMAL_STATES = ("damaged {}", "{} with flaw", "{} with defect", "{} with damage")
WINCLIP_TEMPLATES = (
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)
ENSEMBLES = {
    "mvfa": (NORMAL_STATES, ABNORMAL_STATES, TEMPLATES),
    "winclip": (NORMAL_STATES, WINCLIP_ABNORMAL_STATES, WINCLIP_TEMPLATES),
}


def ensemble_texts(organ: str, kind: str = "mvfa") -> tuple[list[str], list[str]]:
    """Normal and abnormal sentences for an organ word ("brain", "retinal OCT"): every state in
    every template, state-major as in the references (MVFA: 7 x 35 and 5 x 35; WinCLIP: 7 x 21
    and 4 x 21)."""
    if not organ.strip():
        raise ValueError("the organ word must not be empty")
    normal, abnormal, templates = ENSEMBLES[kind]

    def fill(states: tuple[str, ...]) -> list[str]:
        # replace, not format: an organ word with braces must not be read as a field
        return [t.replace("{}", s.replace("{}", organ)) for s in states for t in templates]

    return fill(normal), fill(abnormal)
