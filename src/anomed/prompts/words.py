"""Class words and prompt templates of the published methods (data, no logic)."""

from __future__ import annotations

# MediCLIP (MICCAI 2024): medical state words per class.
MEDICLIP_NORMAL = (
    "normal",
    "healthy",
    "negative",
    "unremarkable",
    "clear",
    "asymptomatic",
    "normal findings",
    "no findings",
    "in good health",
    "no evidence of disease",
)
MEDICLIP_ABNORMAL = (
    "abnormal",
    "positive",
    "symptomatic",
    "disease",
    "lesion",
    "pathological",
    "impaired",
    "evidence of disease",
    "abnormal finding",
    "pathological condition",
    "pathological abnormality",
)

# The organ word each dataset's prompts name (MVFA/MadCLIP "[Objective]").
ORGAN_WORDS = {
    "brain": "brain",
    "brainmri": "brain",
    "phantom": "brain",
    "liver": "liver",
    "retina": "retinal OCT",
    "retina_oct2017": "retinal OCT",
    "retina_resc": "retinal OCT",
    "chest": "chest X-ray film",
    "histopathology": "histopathological image",
    "busi": "breast ultrasound",
}


def organ_word(dataset_name: str, default: str = "medical image") -> str:
    """The organ word for a dataset name (case-insensitive prefix match), else `default`."""
    key = dataset_name.lower()
    for name, word in ORGAN_WORDS.items():
        if key.startswith(name):
            return word
    return default
