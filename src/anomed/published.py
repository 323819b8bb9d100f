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

# MVFA (Huang et al., CVPR 2024), Tables 1-2: AUC % of anomaly classification (AC) and
# segmentation (AS), ViT-L-14 (openai) at 240. As quoted in the "Paper" column of the public
# reproducibility study github.com/Sabit-Ahmed/MVFA-AD (checked against it, not the PDF).
MVFA = {
    "citation": "Huang et al., Adapting Visual-Language Models for Generalizable Anomaly "
    "Detection in Medical Images, CVPR 2024 (Tables 1-2)",
    "backbone": "ViT-L-14 (openai) @240",
    "results": {
        "few-shot k=4": {
            "histopathology": {"image_auroc": 82.71},
            "chest": {"image_auroc": 81.95},
            "retina_oct2017": {"image_auroc": 99.38},
            "brain": {"image_auroc": 92.44, "pixel_auroc": 97.30},
            "liver": {"image_auroc": 81.18, "pixel_auroc": 99.73},
            "retina_resc": {"image_auroc": 96.18, "pixel_auroc": 98.97},
        },
        "zero-shot": {
            "histopathology": {"image_auroc": 77.90},
            "chest": {"image_auroc": 71.11},
            "retina_oct2017": {"image_auroc": 95.40},
            "brain": {"image_auroc": 78.63, "pixel_auroc": 90.27},
            "liver": {"image_auroc": 76.24, "pixel_auroc": 97.85},
            "retina_resc": {"image_auroc": 83.31, "pixel_auroc": 92.05},
        },
    },
}

# MLA-LP (Thanh-Luong, Vu, Ly): its tables were not available to this project (figures only in
# images); the method is implemented, its published numbers are left out rather than guessed.
PUBLISHED["mvfa"] = MVFA


def published_metrics(method: str, protocol: str, class_name: str) -> dict[str, float] | None:
    """A method's published figures (as fractions) for a protocol and dataset class, if any.

    `protocol` is e.g. "zero-shot" or "few-shot k=4"; `class_name` e.g. "brain", "liver".
    """
    table = PUBLISHED.get(method, {}).get("results", {}).get(protocol, {})
    row = table.get(class_name.lower())
    return None if row is None else {k: v / 100.0 for k, v in row.items()}


def published_label(method: str, protocol: str, class_name: str) -> str:
    ref = PUBLISHED[method]
    return f"{class_name}: published {method} ({protocol}, {ref['backbone']})"


# MadCLIP (Shiri, Beyan, Murino, MICCAI 2025): 16-shot averages over the BMAD datasets, AUROC %
# (the figures quoted in the project's MadCLIP issue; per-dataset tables not stored here).
MADCLIP = {
    "citation": "Shiri, Beyan, Murino, MadCLIP: Few-shot Medical Anomaly Detection with CLIP, "
    "MICCAI 2025",
    "backbone": "ViT-L-14 (openai)",
    "results": {"few-shot k=16": {"average": {"image_auroc": 94.08, "pixel_auroc": 99.05}}},
}
PUBLISHED["madclip"] = MADCLIP

# PPAD (MICCAI 2024): AUROC % with 64 normal shots, mean ± std over 5 runs, CheXzero backbone.
PPAD = {
    "citation": "PPAD: position-guided prompts for chest X-ray anomaly detection, MICCAI 2024",
    "backbone": "CheXzero (ViT-B/32, OpenAI format)",
    "results": {
        "few-shot k=64": {
            "zhanglab": {"image_auroc": 96.7},
            "chexpert": {"image_auroc": 88.5},
            "vindr-cxr": {"image_auroc": 81.9},
        }
    },
    "std": {"zhanglab": 0.4, "chexpert": 0.9, "vindr-cxr": 0.9},
}
PUBLISHED["ppad"] = PPAD


def published_rows(method: str, k: int, class_name: str) -> dict[str, dict[str, float]]:
    """Published figures to print beside one of our runs, labelled, as fractions.

    The exact dataset and protocol when the paper has them; otherwise all of the method's
    published rows, so a reader still sees what the paper reports and on what.
    """
    ref = PUBLISHED.get(method)
    if ref is None:
        return {}
    results, backbone = ref["results"], ref["backbone"]
    if method == "mediclip":  # keyed dataset -> metric -> k
        row = {m: v[k] / 100.0 for m, v in results.get(class_name.lower(), {}).items() if k in v}
        return {f"published {method} ({class_name}, k={k}, {backbone})": row} if row else {}
    protocol = f"few-shot k={k}"
    exact = published_metrics(method, protocol, class_name)
    if exact is not None:
        return {published_label(method, protocol, class_name): exact}
    return {
        f"published {method} ({proto}, {name}, {backbone})": {m: v / 100.0 for m, v in row.items()}
        for proto, table in results.items()
        for name, row in table.items()
    }
