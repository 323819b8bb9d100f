"""Scoring one uploaded study and writing what the review page shows.

A 2D image gives `image.png` (the picture, at most 1024 px a side), `heat.png` (the anomaly map
in colour on the checkpoint's fixed colour scale, same size, blended in the browser with an
opacity slider) and `overlay.png` (the side-by-side picture of `anomed predict`). A volume goes
through `predict_volume` (per-slice scores, the 3D map as NIfTI, the slice CSV) and gives one
picture and one heat layer per axial slice, drawn at the voxels' physical aspect ratio.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from anomed.config import to_dict
from anomed.data.io import read_image, shrink_to_side
from anomed.data.volumes import normalize_volume, read_volume, slice_volume
from anomed.engine.detector import Detector
from anomed.engine.volumes import VolumePrediction, predict_volume
from anomed.outputs import finite_or_none
from anomed.serve.batching import BatchedDetector, MicroBatcher
from anomed.serve.uploads import StagedFile
from anomed.viz.overlay import heatmap_overlay, save_prediction_png

MAX_SIDE = 1024  # pictures are drawn at most this large
VIEW = "axial"


@dataclass
class ServedModel:
    """A checkpoint loaded once at start, with the batcher that owns its forward passes."""

    name: str
    run: Path
    detector: Detector
    batcher: MicroBatcher

    @property
    def scorer(self) -> BatchedDetector:
        return BatchedDetector(self.detector, self.batcher)

    def describe(self) -> dict[str, Any]:
        """What `GET /api/models` says about this model (strict JSON)."""
        info, det = self.detector.info, self.detector
        backbone = info.run.backbone
        return finite_or_none(
            {
                "name": self.name,
                "method": info.run.method,
                "preset": info.run.preset,
                "backbone": {
                    "model": backbone.model,
                    "pretrained": backbone.pretrained,
                    "image_size": det.image_size,
                    "random_init": backbone.pretrained is None
                    and not backbone.model.startswith(("local-dir:", "hf-hub:")),
                },
                "class_name": info.class_name,
                "threshold": det.threshold,
                "target_fpr": info.calibration.target_fpr,
                "map_range": list(det.map_range),
                "training": to_dict(info.fit),
                "device": str(det.device),
                "anomed_version": info.anomed_version,
            }
        )


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, compress_level=3)


def _gray8(image: np.ndarray) -> np.ndarray:
    """(H, W[, 3]) float in [0, 1] -> uint8 for display."""
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def heat_layer(amap: np.ndarray, shape: tuple[int, int], limits: tuple[float, float]) -> np.ndarray:
    """An anomaly map (h, w) in colour at (H, W): uint8 (H, W, 3), scaled by `limits`."""
    return heatmap_overlay(np.zeros((*shape, 3), np.float32), amap, *limits, alpha=1.0)


def map_limits(detector: Detector, maps: list[np.ndarray]) -> tuple[float, float]:
    """The checkpoint's colour scale (fixed on validation maps), else these maps' own range."""
    lo, hi = detector.map_range
    if lo is None or hi is None:
        lo = float(min(m.min() for m in maps))
        hi = float(max(m.max() for m in maps))
    return float(lo), float(max(hi, lo + 1e-6))


def score_study(model: ServedModel, staged: StagedFile, study_id: str) -> dict[str, Any]:
    """Score a checked upload; write its pictures beside it; return the study record.

    Raises AnomedError when the file cannot be read (the caller answers 422)."""
    folder = staged.path.parent
    if staged.modality == "image":
        record = _score_image(model, staged, folder)
    else:
        record = _score_volume(model, staged, folder)
    base = {
        "id": study_id,
        "created": time.time(),
        "name": staged.label,
        "model": model.name,
        "kind": staged.modality,
        "file_kind": staged.kind,
        "threshold": model.detector.threshold,
        "sha256": staged.sha256,
        "size": staged.size,
    }
    return finite_or_none({**base, **record})


def _score_image(model: ServedModel, staged: StagedFile, folder: Path) -> dict[str, Any]:
    det = model.detector
    image = read_image(staged.target)  # (H, W, 3) float32 in [0, 1]
    prepared = det.prepare_image(image, staged.label)  # (S, S, 3)
    score, amap = model.batcher.submit(prepared).result()
    pred = det.result(staged.label, score, amap)
    shown = shrink_to_side(image, MAX_SIDE)
    _save_png(folder / "image.png", _gray8(shown))
    record: dict[str, Any] = {"width": shown.shape[1], "height": shown.shape[0]}
    if not pred.ok:
        return {**record, "status": "error", "error": pred.error, "files": ["image.png"]}
    limits = map_limits(det, [amap])
    _save_png(folder / "heat.png", heat_layer(amap, shown.shape[:2], limits))
    save_prediction_png(
        folder / "overlay.png", image, amap, pred.score, pred.decision, det.threshold, limits
    )
    return {
        **record,
        "status": "ok",
        "score": pred.score,
        "decision": pred.decision,
        "map_min": limits[0],
        "map_max": limits[1],
        "files": ["image.png", "heat.png", "overlay.png"],
    }


def _display_shape(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[int, int]:
    """(H, W) of a slice drawn at its physical aspect (row, column spacing), <= MAX_SIDE."""
    height, width = shape[0] * spacing[0], shape[1] * spacing[1]
    scale = min(MAX_SIDE / max(height, width), max(shape) / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _score_volume(model: ServedModel, staged: StagedFile, folder: Path) -> dict[str, Any]:
    result = predict_volume(model.scorer, staged.target, folder / "predict", view=VIEW)
    return volume_review(model.detector, staged.target, result, folder)


def volume_review(
    det: Detector, source: Path, result: VolumePrediction, folder: Path
) -> dict[str, Any]:
    """Move a volume's map and slice CSV into the study `folder` and draw its pictures; the
    study record's result fields. Also used for series scored by `anomed pacs watch`."""
    shutil.move(result.map_path, folder / "anomaly.nii.gz")
    shutil.move(result.csv_path, folder / "slices.csv")
    shutil.rmtree(folder / "predict", ignore_errors=True)
    volume = normalize_volume(read_volume(source))
    images = slice_volume(volume.data, VIEW)  # (S, H, W) in [0, 1]
    maps = slice_volume(read_volume(folder / "anomaly.nii.gz").data, VIEW)  # (S, H, W)
    sx, sy, _ = volume.spacing  # axial: rows run along Y, columns along X
    shape = _display_shape(images.shape[1:], (sy, sx))
    scored = sorted(result.slice_scores)
    limits = map_limits(det, [maps[i] for i in scored])
    _write_slices(folder, images, maps, scored, shape, limits)
    top = max(scored, key=lambda i: result.slice_scores[i])
    save_prediction_png(
        folder / "overlay.png",
        cv2.resize(images[top], shape[::-1], interpolation=cv2.INTER_LINEAR),
        maps[top],
        result.score,
        result.decision,
        det.threshold,
        limits,
    )
    return {
        "status": "ok",
        "score": result.score,
        "decision": result.decision,
        "n_slices": len(images),
        "max_slice": top,
        "slice_scores": [result.slice_scores.get(i) for i in range(len(images))],
        "map_min": limits[0],
        "map_max": limits[1],
        "width": shape[1],
        "height": shape[0],
        "files": ["overlay.png", "anomaly.nii.gz", "slices.csv"],
    }


def _write_slices(folder, images, maps, scored, shape, limits) -> None:
    """slices/NNNN.png for every slice, heat/NNNN.png for the scored (non-empty) ones."""
    (folder / "slices").mkdir()
    (folder / "heat").mkdir()
    size = shape[::-1]  # cv2 wants (W, H)
    for i, image in enumerate(images):
        shown = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        _save_png(folder / "slices" / f"{i:04d}.png", _gray8(shown))
    for i in scored:
        _save_png(folder / "heat" / f"{i:04d}.png", heat_layer(maps[i], shape, limits))
