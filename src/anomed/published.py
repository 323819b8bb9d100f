"""Published figures of the methods anomed implements, stored as data with their source.

Shown beside our own runs so a reader sees both; ours are labelled with the backbone used.
"""

from __future__ import annotations

# MediCLIP (Zhang et al., MICCAI 2024), Tables 1-2: OpenAI CLIP ViT-L/14, mean over 3 support
# sets; percentages. Keys: dataset -> metric -> k -> value.
MEDICLIP = {
    "citation": "Zhang et al., MediCLIP: Adapting CLIP for Few-shot Medical Image Anomaly "
    "Detection, MICCAI 2024 (Tables 1-2)",
    "backbone": "ViT-L-14 (openai)",
    "results": {
        "brainmri": {"image_auroc": {4: 94.1, 8: 94.9, 16: 94.8, 32: 95.4}},
        "busi": {
            "image_auroc": {4: 88.5, 8: 89.0, 16: 90.8, 32: 91.0},
            "pixel_auroc": {4: 88.0, 8: 88.6, 16: 89.9, 32: 90.1},
        },
    },
}

PUBLISHED = {"mediclip": MEDICLIP}
