"""Volumes end to end: slice datasets from cases, the cross-sequence / cross-view protocol, and
3D prediction (per-slice scores and maps stacked back into a NIfTI that overlays the input).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from anomed.data.datasets import resize_image
from anomed.data.phantom import write_atomically
from anomed.data.phantom3d import SEQUENCES, VolumeCase, load_phantom_cases
from anomed.data.volumes import (
    VIEWS,
    nonempty_slices,
    normalize_volume,
    read_mask_volume,
    read_volume,
    slice_volume,
    stack_slices,
    write_nifti,
)
from anomed.engine.checkpoint import CheckpointInfo
from anomed.engine.device import autocast
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod


def split_cases(cases: list[VolumeCase], train_fraction: float = 0.5) -> tuple[list, list]:
    """Training cases = the first normal cases (by name); every other case is a test case."""
    normals = sorted((c for c in cases if c.label == 0), key=lambda c: c.name)
    n_train = max(1, int(round(train_fraction * len(normals))))
    train = normals[:n_train]
    return train, [c for c in sorted(cases, key=lambda c: c.name) if c not in train]


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def _write_case(tmp: Path, case: VolumeCase, sequence: str, view: str, split: str) -> None:
    volume = normalize_volume(read_volume(case.sequences[sequence]))
    lesion = read_mask_volume(case.mask, like=volume)
    keep = nonempty_slices(volume.data, view)
    slices, masks = slice_volume(volume.data, view), slice_volume(lesion, view)
    for i in np.flatnonzero(keep):
        name = f"{case.name}_{view}_{i:03d}.png"
        if split == "train":
            if not masks[i].any():
                _save(tmp / "train" / "normal" / name, slices[i])
        elif masks[i].any():
            _save(tmp / "test" / "abnormal" / name, slices[i])
            _save(tmp / "test" / "masks" / name.replace(".png", "_mask.png"), masks[i])
        else:
            _save(tmp / "test" / "normal" / name, slices[i])


def export_slices(
    cases_root: str | Path,
    sequence: str,
    view: str,
    output: str | Path,
    train_fraction: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write the slices of one sequence and view as a folder-layout dataset.

    Training slices come from the training cases (normal, lesion-free slices only); test slices
    from the other cases, abnormal where the lesion mask touches the slice (mask written)."""
    if sequence not in SEQUENCES or view not in VIEWS:
        raise AnomedError(
            f"sequence {sequence!r} / view {view!r}: use one of {SEQUENCES} and {VIEWS}"
        )
    train, test = split_cases(load_phantom_cases(cases_root), train_fraction)

    def write(tmp: Path) -> Path:
        for split, cases in (("train", train), ("test", test)):
            for case in cases:
                _write_case(tmp, case, sequence, view, split)
        (tmp / "README.txt").write_text(
            f"{sequence} {view} slices of {Path(cases_root).name}; train cases "
            f"{[c.name for c in train]}, test cases {[c.name for c in test]}\n"
        )
        return Path(output)

    return write_atomically(Path(output).absolute(), overwrite, write)


def cross_protocol(
    checkpoint: str | Path,
    cases_root: str | Path,
    output: str | Path,
    sequences: tuple[str, ...] = SEQUENCES,
    views: tuple[str, ...] = VIEWS,
    evaluate: Callable | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict]]:
    """Evaluate one checkpoint on every sequence x view of the test cases; print the tables."""
    from anomed.engine.run import eval_run

    evaluate = evaluate or (lambda ck, data, out: eval_run(ck, data, out, progress=False)[0])
    output = Path(output)
    results: dict[str, dict[str, dict]] = {}
    for seq in sequences:
        for view in views:
            data = output / "slices" / f"{seq}_{view}"
            if not (data / "test").is_dir():
                export_slices(cases_root, seq, view, data)
            metrics = evaluate(checkpoint, str(data), output / "eval" / f"{seq}_{view}").metrics
            results.setdefault(seq, {})[view] = metrics
            log(
                f"{seq} {view}: pixel AUROC {_pct(metrics['pixel_auroc'])}, "
                f"image AUROC {_pct(metrics['image_auroc'])}"
            )
    tables = "\n\n".join(protocol_table(results, key) for key in ("pixel_auroc", "image_auroc"))
    (output / "cross_protocol.md").write_text(tables + "\n")
    (output / "cross_protocol.json").write_text(json.dumps(results, indent=1))
    log(tables)
    return results


def _pct(value: float | None) -> str:
    return "N/A" if value is None else f"{100 * value:.2f}"


def protocol_table(results: dict[str, dict[str, dict]], key: str) -> str:
    """Sequences as rows, views as columns, as the CondPrompt poster prints them."""
    views = list(next(iter(results.values())))
    lines = [f"| {key} | " + " | ".join(views) + " |", "|---|" + "---:|" * len(views)]
    for seq, row in results.items():
        lines.append(f"| {seq} | " + " | ".join(_pct(row[v].get(key)) for v in views) + " |")
    return "\n".join(lines)


@dataclass
class VolumePrediction:
    path: Path
    score: float
    decision: str
    map_path: Path
    csv_path: Path


@torch.no_grad()
def predict_volume(
    method: AnomalyMethod,
    info: CheckpointInfo,
    path: str | Path,
    output: Path,
    view: str = "axial",
    batch_size: int = 16,
    volume_score: str = "max",
) -> VolumePrediction:
    """Score every non-empty slice of a volume; write the 3D map (input grid) and a slice CSV."""
    volume = normalize_volume(read_volume(path))
    slices = slice_volume(volume.data, view)  # (S, H, W)
    keep = np.flatnonzero(nonempty_slices(volume.data, view))
    maps = np.zeros(slices.shape, np.float32)
    scores = np.full(len(slices), np.nan, np.float32)
    size, device = method.backbone.image_size, next(method.parameters()).device
    for start in range(0, len(keep), batch_size):
        idx = keep[start : start + batch_size]
        batch = np.stack([resize_image(np.repeat(slices[i][..., None], 3, -1), size) for i in idx])
        with autocast(device, info.run.train.amp):
            out = method(torch.from_numpy(batch.transpose(0, 3, 1, 2)).float().to(device))
        for j, i in enumerate(idx):
            amap = out.anomaly_map[j].float().cpu().numpy()
            maps[i] = cv2.resize(amap, slices.shape[:0:-1], interpolation=cv2.INTER_LINEAR)
            scores[i] = float(out.image_score[j])
    valid = scores[keep]
    score = float(valid.max() if volume_score == "max" else np.sort(valid)[-3:].mean())
    name = Path(str(path).rstrip("/")).name.replace(".nii.gz", "").replace(".nii", "")
    output.mkdir(parents=True, exist_ok=True)
    map_path = write_nifti(
        output / f"{name}_anomaly.nii.gz", stack_slices(maps, view, volume.data.shape), volume
    )
    csv_path = output / f"{name}_slices.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["slice", "view", "score", "decision"])
        for i in keep:
            decision = "abnormal" if scores[i] > info.calibration.threshold else "normal"
            writer.writerow([int(i), view, f"{scores[i]:.6f}", decision])
    decision = "abnormal" if score > info.calibration.threshold else "normal"
    return VolumePrediction(Path(path), score, decision, map_path, csv_path)
