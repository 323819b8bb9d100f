"""Volumes end to end: slice datasets from cases, the cross-sequence / cross-view protocol, and
3D prediction (per-slice scores and maps stacked back into a NIfTI that overlays the input).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from anomed.data.datasets import resize_image
from anomed.data.io import MIN_SIDE
from anomed.data.phantoms import is_phantom_dataset
from anomed.data.phantoms.brain import write_atomically
from anomed.data.phantoms.heads import SEQUENCES, VolumeCase, load_phantom_cases
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
from anomed.engine.domain import volume_distance
from anomed.errors import AnomedError
from anomed.outputs import write_json, write_text

if TYPE_CHECKING:
    from anomed.engine.detector import Detector


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
        origin = " (anomed phantom volumes)" if is_phantom_dataset(cases_root) else ""
        (tmp / "README.txt").write_text(
            f"{sequence} {view} slices of {Path(cases_root).name}{origin}; train cases "
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

    evaluate = evaluate or (
        lambda ck, data, out: eval_run(ck, data, out, progress=False, overwrite=True)[0]
    )
    output = Path(output)
    results: dict[str, dict[str, dict]] = {}
    for seq in sequences:
        for view in views:
            data = output / "slices" / f"{seq}_{view}"
            _current_slices(cases_root, seq, view, data)
            metrics = evaluate(checkpoint, str(data), output / "eval" / f"{seq}_{view}").metrics
            results.setdefault(seq, {})[view] = metrics
            log(
                f"{seq} {view}: pixel AUROC {_pct(metrics['pixel_auroc'])}, "
                f"image AUROC {_pct(metrics['image_auroc'])}"
            )
    tables = "\n\n".join(protocol_table(results, key) for key in ("pixel_auroc", "image_auroc"))
    label, method = _run_label(checkpoint)
    tables = f"{label}\n\n{tables}"
    published = published_protocol_table(method, cases_root)
    tables += f"\n\n{published}" if published else ""
    write_text(output / "cross_protocol.md", tables + "\n")
    write_json(output / "cross_protocol.json", results)
    log(tables)
    return results


def _current_slices(cases_root: str | Path, sequence: str, view: str, data: Path) -> None:
    """Slices of these cases at `data`: reused only when made from the same cases (their
    folder and cases.json, recorded beside the slices), else written again."""
    cases = Path(cases_root)
    index = cases / "cases.json"
    source = {
        "cases_root": os.path.abspath(cases),
        "cases_json_sha256": hashlib.sha256(index.read_bytes()).hexdigest()
        if index.is_file()
        else None,
        "sequence": sequence,
        "view": view,
    }
    record = data.with_name(f"{data.name}.source.json")
    try:
        current = json.loads(record.read_text()) == source and (data / "test").is_dir()
    except (OSError, ValueError):
        current = False
    if not current:
        record.unlink(missing_ok=True)
        export_slices(cases_root, sequence, view, data, overwrite=True)
        write_json(record, source)


def _run_label(checkpoint: str | Path) -> tuple[str, str]:
    """(label, method) of the run the tables come from: method, preset, backbone (random-init
    said so); the bare path and "" when its config cannot be read."""
    from anomed.engine.checkpoint import read_checkpoint_info

    try:
        run = read_checkpoint_info(checkpoint).run
    except AnomedError:
        return f"checkpoint {checkpoint}", ""
    weights = run.backbone.pretrained or "random-init backbone"
    label = f"{run.method} [preset {run.preset}] / {run.backbone.model} ({weights}), {checkpoint}"
    return label, run.method


def published_protocol_table(method: str, cases_root: str | Path) -> str:
    """The paper's own sequence x view table (CondPrompt's poster) for `method`, labelled;
    "" for other methods and beside phantom volumes."""
    from anomed.published import PUBLISHED, published_cross_sequence

    table = published_cross_sequence(method)
    if table is None or is_phantom_dataset(cases_root):
        return ""
    ref = PUBLISHED[method]
    views = list(next(iter(table.values())))
    lines = [
        f"published {method} ({ref['citation']}; {ref['backbone']}, trained on T1 axial): "
        "pixel AUROC %",
        "",
        "| pixel_auroc | " + " | ".join(views) + " |",
        "|---|" + "---:|" * len(views),
    ]
    lines += [
        f"| {seq} | " + " | ".join(f"{row[v]:.2f}" for v in views) + " |"
        for seq, row in table.items()
    ]
    return "\n".join(lines)


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
    decision: str | None  # None: the checkpoint has no threshold
    map_path: Path
    csv_path: Path
    slice_scores: dict[int, float]  # non-empty slice index -> score
    domain_distance: float | None = None  # median over the slices (engine.domain)


def predict_volume(
    detector: Detector,
    path: str | Path,
    output: Path,
    view: str = "axial",
    volume_score: str = "max",
) -> VolumePrediction:
    """Score every non-empty slice of a volume; write the 3D map (input grid) and a slice CSV.

    A volume with no non-empty slice or a non-finite slice score is an AnomedError (the caller
    reports it as that input's error)."""
    volume = normalize_volume(read_volume(path))
    slices = slice_volume(volume.data, view)  # (S, H, W)
    if min(slices.shape[1:]) < MIN_SIDE:
        raise AnomedError(
            f"{path}: {view} slices are {slices.shape[1]}x{slices.shape[2]} pixels, too small "
            f"to score (each side must be at least {MIN_SIDE} px). Fix: check the volume's "
            "shape and orientation (a 1D or 2D array stored as a volume?)."
        )
    keep = np.flatnonzero(nonempty_slices(volume.data, view))
    if keep.size == 0:
        raise AnomedError(
            f"{path}: every {view} slice is empty (a blank or constant volume); nothing to "
            "score. Fix: check that the file holds the scan's intensities (not an empty "
            "mask or a failed export)."
        )
    maps = np.zeros(slices.shape, np.float32)
    scores = np.full(len(slices), np.nan, np.float32)
    domain: list[np.ndarray] = []  # per batch, slice distances to the training domain
    size = detector.image_size
    for start in range(0, len(keep), detector.batch_size):
        idx = keep[start : start + detector.batch_size]
        batch = np.stack([resize_image(np.repeat(slices[i][..., None], 3, -1), size) for i in idx])
        batch_scores, batch_maps, batch_domain = detector.run_batch(batch)
        if batch_domain is not None:
            domain.append(batch_domain)
        for j, i in enumerate(idx):
            maps[i] = cv2.resize(batch_maps[j], slices.shape[:0:-1], interpolation=cv2.INTER_LINEAR)
            scores[i] = batch_scores[j]
    valid = scores[keep]
    if not np.isfinite(valid).all() or not np.isfinite(maps).all():
        raise AnomedError(
            f"{path}: the model produced non-finite (NaN/Inf) slice scores or maps. Fix: check "
            "the checkpoint's weights (retrain it) and the volume's intensities."
        )
    score = float(valid.max() if volume_score == "max" else np.sort(valid)[-3:].mean())
    name = Path(str(path).rstrip("/")).name.replace(".nii.gz", "").replace(".nii", "")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "volume"
    output.mkdir(parents=True, exist_ok=True)
    map_path, n = output / f"{name}_anomaly.nii.gz", 1
    while map_path.exists():
        map_path, n = output / f"{name}_{n}_anomaly.nii.gz", n + 1
    map_path = write_nifti(map_path, stack_slices(maps, view, volume.data.shape), volume)
    csv_path = map_path.with_name(map_path.name.replace("_anomaly.nii.gz", "_slices.csv"))
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["slice", "view", "score", "decision"])
        for i in keep:
            writer.writerow([int(i), view, f"{scores[i]:.6f}", detector.decide(float(scores[i]))])
    slice_scores = {int(i): float(scores[i]) for i in keep}
    return VolumePrediction(
        Path(path),
        score,
        detector.decide(score),
        map_path,
        csv_path,
        slice_scores,
        volume_distance(np.concatenate(domain) if domain else None),
    )
