"""Published figures of the methods anomed implements, stored as data with their source.

Every table: method -> {"citation", "backbone", "splits": dataset -> `SPLITS` key, "results":
protocol -> dataset -> metric -> %}.
A protocol is "few-shot k=N" (N normal shots; the supervised methods also use N abnormal ones)
or "zero-shot"; a dataset is the class name anomed gives the dataset (BMAD: brain, liver,
retina_resc, retina_oct2017, chest, histopathology) or, where the paper names a dataset rather
than an organ, that dataset's name (PPAD: zhanglab, chexpert, vindr-cxr). A published row is
printed beside one of our runs only where the method, the dataset and the protocol all match
and the run's test set is the benchmark split the paper measured on (`SPLITS`: the same sorted
file list and counts, compared by fingerprint); otherwise the report says why no row is shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the BMAD columns of MVFA's, MLA-LP's and MadCLIP's tables, in the papers' order
# (HIS, ChestXray, OCT17 image AUROC; BrainMRI, LiverCT, RESC image then pixel AUROC)
_BMAD = ("histopathology", "chest", "retina_oct2017", "brain", "liver", "retina_resc")


def _bmad_row(*values: float) -> dict[str, dict[str, float]]:
    """9 figures in the papers' column order -> dataset -> metric -> value."""
    his, chest, oct17, *pairs = values
    row = {
        "histopathology": {"image_auroc": his},
        "chest": {"image_auroc": chest},
        "retina_oct2017": {"image_auroc": oct17},
    }
    for i, name in enumerate(_BMAD[3:]):
        row[name] = {"image_auroc": pairs[2 * i], "pixel_auroc": pairs[2 * i + 1]}
    return row


@dataclass(frozen=True)
class SetFingerprint:
    """What a run was tested on: `fingerprint` of its sorted test list and its counts."""

    fingerprint: str  # sha256 of the sorted "label<TAB>path relative to the dataset root" lines
    n_test: int
    n_abnormal: int


@dataclass(frozen=True)
class Split:
    """A benchmark split a paper measured on; None where anomed has no record of it."""

    paper: str  # whose split: "MediCLIP"
    dataset: str  # "BUSI"
    n_test: int | None = None
    n_abnormal: int | None = None
    fingerprint: str | None = None

    def differs(self, test: SetFingerprint | None) -> str:
        """ "" when `test` is this split, else the sentence a report prints instead of the row."""
        head = f"published figures are for {self.paper}'s split of {self.dataset}"
        if test is None:
            return (
                f"{head}; this run did not record its test list (made by an older anomed), "
                "so no published row is shown"
            )
        counts = (test.n_test, test.n_abnormal)
        if self.n_test is not None and (self.n_test, self.n_abnormal) != counts:
            return (
                f"{head}; this test set differs ({test.n_test} images, {test.n_abnormal} "
                f"abnormal; the paper's: {self.n_test}, {self.n_abnormal})"
            )
        if self.fingerprint is None:
            return (
                f"{head}; this test set differs or cannot be told apart from it (anomed has no "
                "record of that split's file list), so no published row is shown"
            )
        return "" if self.fingerprint == test.fingerprint else f"{head}; this test set differs"


def fingerprint_of(samples: Iterable[Any], root: str | Path) -> SetFingerprint:
    """The fingerprint and counts of a test set: samples with `.image` (a path under `root`,
    else its file name is used) and `.label` (1 abnormal)."""
    lines, n_abnormal = [], 0
    for sample in samples:
        image = Path(sample.image)
        try:
            name = image.relative_to(root).as_posix()
        except ValueError:
            name = image.name
        lines.append(f"{int(sample.label)}\t{name}")
        n_abnormal += int(sample.label) == 1
    digest = hashlib.sha256("".join(f"{line}\n" for line in sorted(lines)).encode()).hexdigest()
    return SetFingerprint(digest, len(lines), n_abnormal)


_BMAD_SPLIT = "MVFA (its BMAD folders, also MLA-LP's and MadCLIP's)"
SPLITS: dict[str, Split] = {
    # computed from MediCLIP's samples/test.json (../shared/data/mediclip/<name>)
    "mediclip/busi": Split(
        "MediCLIP",
        "BUSI",
        748,
        647,
        "8393401400bc7973d4ecc6a166d7c205aefd0a3c5d36ce5e26edf4abaf692903",
    ),
    "mediclip/brainmri": Split(
        "MediCLIP",
        "BrainMRI",
        220,
        155,
        "b9ee0b151658b3c4b0dbd173b128d700d7649d9fb7ccaf22271679184d8bed8d",
    ),
    # BMAD as MVFA's repository packs it: no file list or counts recorded here
    **{f"bmad/{name}": Split(_BMAD_SPLIT, f"BMAD {name}") for name in _BMAD},
    # PPAD's chest sets (SQUID's ZhangLab and CheXpert, DDAD's Med-AD VinDr-CXR); ZhangLab's
    # test set is Kermany et al.'s public one: 234 normal + 390 pneumonia
    "ppad/zhanglab": Split("PPAD (SQUID's benchmark)", "ZhangLab chest X-ray", 624, 390),
    "ppad/chexpert": Split("PPAD (SQUID's benchmark)", "CheXpert"),
    "ppad/vindr-cxr": Split("PPAD (DDAD's Med-AD benchmark)", "VinDr-CXR"),
}
_BMAD_SPLITS = {name: f"bmad/{name}" for name in _BMAD}


# MediCLIP (Zhang et al., MICCAI 2024), Tables 1-2: OpenAI CLIP ViT-L/14, mean over 3 support
# sets; k normal shots only.
MEDICLIP = {
    "citation": "Zhang et al., MediCLIP: Adapting CLIP for Few-shot Medical Image Anomaly "
    "Detection, MICCAI 2024 (Tables 1-2)",
    "backbone": "ViT-L-14 (openai)",
    "splits": {"brainmri": "mediclip/brainmri", "busi": "mediclip/busi"},
    "results": {
        f"few-shot k={k}": {
            "brainmri": {"image_auroc": brain},
            "busi": {"image_auroc": busi_image, "pixel_auroc": busi_pixel},
        }
        for k, brain, busi_image, busi_pixel in (
            (4, 94.1, 88.5, 88.0),
            (8, 94.9, 89.0, 88.6),
            (16, 94.8, 90.8, 89.9),
            (32, 95.4, 91.0, 90.1),
        )
    },
}

# MVFA (Huang et al., CVPR 2024): its figures as MLA-LP's Tables 1-2 and MadCLIP's Tables 1-2
# quote them (both agree; no MVFA paper is among this project's sources). k normal + k abnormal.
MVFA = {
    "citation": "Huang et al., Adapting Visual-Language Models for Generalizable Anomaly "
    "Detection in Medical Images, CVPR 2024 (as quoted in MLA-LP Tables 1-2 and MadCLIP "
    "Tables 1-2)",
    "backbone": "ViT-L-14 (openai) @240",
    "splits": _BMAD_SPLITS,
    "results": {
        "zero-shot": _bmad_row(77.90, 71.11, 95.40, 78.63, 90.27, 76.24, 97.85, 83.31, 92.05),
        "few-shot k=2": _bmad_row(82.61, 81.32, 97.98, 92.72, 96.55, 81.08, 96.57, 91.36, 98.11),
        "few-shot k=4": _bmad_row(82.71, 81.95, 99.38, 92.44, 97.30, 81.18, 99.73, 96.18, 98.97),
        "few-shot k=8": _bmad_row(85.10, 83.89, 99.64, 92.61, 97.21, 85.90, 99.79, 96.57, 99.00),
        "few-shot k=16": _bmad_row(82.62, 85.72, 99.66, 94.40, 97.70, 83.85, 99.73, 97.25, 99.07),
    },
}

# MLA-LP (Thanh-Luong et al.), Table 1 (zero-shot: trained on the other five datasets) and
# Table 2 (few-shot, k normal + k abnormal), ViT-L/14 at 240, rows "MLA-PL (Ours)".
MLALP = {
    "citation": "Thanh-Luong, Vu, Ly et al., Multi-Level Adapters with Learnable Prompt for "
    "medical anomaly detection (MLA-LP), Tables 1-2",
    "backbone": "ViT-L-14 @240",
    "splits": _BMAD_SPLITS,
    "results": {
        "zero-shot": _bmad_row(79.89, 68.65, 96.35, 73.62, 89.79, 76.77, 98.82, 84.50, 92.27),
        "few-shot k=2": _bmad_row(71.45, 86.07, 98.16, 92.73, 96.98, 81.81, 98.02, 92.17, 97.63),
        "few-shot k=4": _bmad_row(83.05, 82.13, 99.66, 91.34, 97.10, 84.50, 99.63, 93.47, 99.02),
        "few-shot k=8": _bmad_row(87.38, 84.12, 99.15, 91.90, 96.95, 89.39, 99.65, 97.14, 98.92),
        "few-shot k=16": _bmad_row(85.56, 87.39, 99.93, 94.51, 97.91, 92.75, 99.64, 97.37, 99.34),
    },
}

# MadCLIP (Shiri, Beyan, Murino, MICCAI 2025), Table 1 (16 shots per class) and Table 2 (2, 4,
# 8 shots per class): AUROC %, with the paper's averages over its datasets.
_MADCLIP_ROWS = {
    2: ((83.62, 84.56, 99.06, 93.93, 97.92, 84.48, 99.39, 95.09, 97.18), (90.12, 98.16)),
    4: ((80.05, 88.10, 99.37, 95.25, 97.90, 82.97, 99.29, 96.62, 98.90), (90.39, 98.69)),
    8: ((87.45, 83.90, 99.14, 95.17, 98.02, 89.31, 99.81, 97.16, 98.85), (92.02, 98.89)),
    16: ((90.14, 88.15, 99.71, 95.90, 97.97, 91.46, 99.74, 99.11, 99.45), (94.08, 99.05)),
}
MADCLIP = {
    "citation": "Shiri, Beyan, Murino, MadCLIP: Few-shot Medical Anomaly Detection with CLIP, "
    "MICCAI 2025 (Tables 1-2)",
    "backbone": "ViT-L-14 (openai) @240",
    "splits": _BMAD_SPLITS,
    "results": {
        f"few-shot k={k}": {
            **_bmad_row(*row),
            "average": {"image_auroc": avg[0], "pixel_auroc": avg[1]},
        }
        for k, (row, avg) in _MADCLIP_ROWS.items()
    },
}

# PPAD (MICCAI 2024): AUROC % with 64 normal shots, mean ± std over 5 runs, CheXzero backbone.
PPAD = {
    "citation": "PPAD: position-guided prompts for chest X-ray anomaly detection, MICCAI 2024",
    "backbone": "CheXzero (ViT-B/32, OpenAI format)",
    "splits": {name: f"ppad/{name}" for name in ("zhanglab", "chexpert", "vindr-cxr")},
    "results": {
        "few-shot k=64": {
            "zhanglab": {"image_auroc": 96.7},
            "chexpert": {"image_auroc": 88.5},
            "vindr-cxr": {"image_auroc": 81.9},
        }
    },
    "std": {"zhanglab": 0.4, "chexpert": 0.9, "vindr-cxr": 0.9},
}

# WinCLIP (Jeong et al., CVPR 2023) zero-shot on the BMAD datasets, as MLA-LP's Table 1 quotes
# it (collected there from Huang et al.).
WINCLIP = {
    "citation": "Jeong et al., WinCLIP, CVPR 2023 (zero-shot BMAD figures as quoted in MLA-LP "
    "Table 1)",
    "backbone": "ViT-B-16-plus-240 (laion400m)",
    "splits": _BMAD_SPLITS,
    "results": {
        "zero-shot": _bmad_row(69.85, 70.86, 46.64, 66.49, 85.99, 64.20, 96.20, 42.51, 80.56)
    },
}

# CondPrompt (Kim and Lee, poster): trained on T1 axial brain MRI slices (ViT-L/14); pixel
# AUROC % on every MRI sequence x view, and a zero-shot transfer to chest X-ray and retinal OCT.
# The poster's "Retina" has a pixel AUROC, so it is the OCT set with masks (RESC).
CONDPROMPT = {
    "citation": "Kim and Lee, Conditional Prompt Learning for Anomaly Detection in Medical "
    "Image Slices (poster)",
    "backbone": "ViT-L-14",
    "splits": _BMAD_SPLITS,
    "results": {
        "zero-shot": {
            "chest": {"image_auroc": 55.47},
            "retina_resc": {"image_auroc": 55.83, "pixel_auroc": 53.15},
        },
    },
    # trained on T1 axial; rows: sequence, columns: view
    "cross_sequence": {
        "pixel_auroc": {
            "t1": {"axial": 93.19, "sagittal": 87.43, "coronal": 87.16},
            "t1ce": {"axial": 85.97, "sagittal": 83.52, "coronal": 84.74},
            "t2": {"axial": 90.26, "sagittal": 85.92, "coronal": 87.42},
            "flair": {"axial": 88.43, "sagittal": 84.78, "coronal": 85.20},
        }
    },
}

PUBLISHED = {
    "mediclip": MEDICLIP,
    "mvfa": MVFA,
    "mlalp": MLALP,
    "madclip": MADCLIP,
    "ppad": PPAD,
    "winclip": WINCLIP,
    "condprompt": CONDPROMPT,
}


def protocol_name(k: int) -> str:
    """ "zero-shot" for k = 0, else "few-shot k=N"."""
    return "zero-shot" if k == 0 else f"few-shot k={k}"


def published_entry(
    method: str, protocol: str, class_name: str, dataset: str = ""
) -> tuple[str, dict[str, float]] | None:
    """(the key matched, its figures in %) for exactly this method, protocol and dataset (by
    class name, else by dataset folder name), or None. The test split is not checked here."""
    table = PUBLISHED.get(method, {}).get("results", {}).get(protocol, {})
    for key in (class_name.lower(), dataset.lower()):
        if key and key != "average" and key in table:
            return key, dict(table[key])
    return None


def split_of(method: str, key: str) -> Split:
    """The benchmark split behind a method's published `key` (a dataset of its tables)."""
    split_id = PUBLISHED[method].get("splits", {}).get(key)
    paper = PUBLISHED[method]["citation"].split(",")[0]
    return SPLITS[split_id] if split_id else Split(paper, key)


def published_match(
    method: str, protocol: str, class_name: str, dataset: str, test: SetFingerprint | None
) -> tuple[str, dict[str, float], str] | None:
    """(key, figures in %, why not) for this method, protocol and dataset: `why not` is "" when
    `test` is the paper's split, else the sentence to print instead of the row; None when the
    paper has no such figure."""
    found = published_entry(method, protocol, class_name, dataset)
    if found is None:
        return None
    key, row = found
    return key, row, split_of(method, key).differs(test)


def published_metrics(
    method: str, protocol: str, class_name: str, dataset: str, test: SetFingerprint | None
) -> dict[str, float] | None:
    """A method's published figures (as fractions) for a run tested on `test`, if any."""
    found = published_match(method, protocol, class_name, dataset, test)
    if found is None or found[2]:
        return None
    return {k: v / 100.0 for k, v in found[1].items()}


def published_label(method: str, protocol: str, class_name: str) -> str:
    ref = PUBLISHED[method]
    return f"{class_name}: published {method} ({protocol}, {ref['backbone']})"


def published_value(
    method: str, class_name: str, k: int, metric: str, test: SetFingerprint | None = None
) -> float | None:
    """One published figure in percent (k = 0: zero-shot) for a run tested on `test` (the
    paper's split), or None; `test=None` looks the table up without any split check."""
    protocol = protocol_name(k)
    if test is None:
        found = published_entry(method, protocol, class_name)
        return None if found is None else found[1].get(metric)
    match = published_match(method, protocol, class_name, "", test)
    return None if match is None or match[2] else match[1].get(metric)


def published_rows(
    method: str, k: int, class_name: str, dataset: str, test: SetFingerprint | None
) -> tuple[dict[str, dict[str, float]], str]:
    """(rows, note): the published figures to print beside one of our runs, labelled, as
    fractions: only the row of the same method, dataset (class name or dataset name) and
    protocol (k normal shots; k = 0: zero-shot), and only when the run's test set is the
    paper's split. Otherwise no rows and, where the paper has the figure, the note saying why."""
    protocol = protocol_name(k)
    found = published_match(method, protocol, class_name, dataset, test)
    if found is None:
        return {}, ""
    key, row, why_not = found
    if why_not:
        return {}, why_not
    label = f"published {method} ({key}, {protocol}, {PUBLISHED[method]['backbone']})"
    return {label: {m: v / 100.0 for m, v in row.items()}}, ""


def published_cross_sequence(method: str, metric: str = "pixel_auroc") -> dict | None:
    """The sequence x view table a paper gives (CondPrompt), in %: sequence -> view -> value."""
    return PUBLISHED.get(method, {}).get("cross_sequence", {}).get(metric)
