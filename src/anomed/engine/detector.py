"""A trained detector loaded once and kept warm: images in, scores, decisions and maps out.

Everything that scores images outside training goes through `Detector` (the CLI's predict, the
service, the Ray actors, the ONNX self-check), so all of them decide the same way: a score is
compared with the calibrated threshold; a non-finite score or a failed input is an error, never
"normal"; a checkpoint saved without a threshold gives no decision at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from anomed.config import Positive, coerce
from anomed.data.datasets import resize_image
from anomed.data.io import MIN_SIDE, check_pixels, read_image, shrink_to_side
from anomed.engine.checkpoint import CheckpointInfo, load_checkpoint
from anomed.engine.device import autocast, resolve_device
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod

Decision = Literal["abnormal", "normal"]
DISPLAY_SIDE = 1024  # kept images (for pictures) are shrunk to this: memory stays bounded


def display_copy(image: np.ndarray, max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The image as float32, shrunk (area filter) so its longer side is at most `max_side`."""
    return shrink_to_side(np.asarray(image, np.float32), max_side)


@dataclass
class Prediction:
    """One input's result. `status` is "ok" or "error"; on error only `error` is set."""

    source: str  # file path, or "array[i]" for in-memory images
    status: Literal["ok", "error"] = "ok"
    score: float | None = None
    decision: Decision | None = None  # None: error, or the checkpoint has no threshold
    threshold: float | None = None
    anomaly_map: np.ndarray | None = field(default=None, repr=False)  # (S, S) float32
    # the input (H, W[, 3]) when kept, shrunk to at most DISPLAY_SIDE pixels a side
    image: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Detector:
    """A checkpoint's method on one device, with its calibrated threshold.

    `score_batch` is the raw forward pass; `predict` adds reading, checking and per-input
    isolation, so one bad input becomes one error row and the others are still scored.
    """

    def __init__(
        self,
        method: AnomalyMethod,
        info: CheckpointInfo,
        device: torch.device,
        batch_size: int = 16,
        run_dir: Path | None = None,
    ) -> None:
        self.method = method.eval()
        self.info = info
        self.device = device
        self.batch_size = batch_size
        self.run_dir = run_dir

    @property
    def image_size(self) -> int:
        return self.method.backbone.image_size

    @property
    def threshold(self) -> float | None:
        """The calibrated decision threshold; None when the run was saved uncalibrated."""
        return self.info.calibration.threshold

    @property
    def map_range(self) -> tuple[float, float]:
        """Heatmap colour scale fixed on validation maps."""
        cal = self.info.calibration
        return cal.map_min, cal.map_max

    def decide(self, score: float | None) -> Decision | None:
        """abnormal above the threshold; None without a threshold or a finite score."""
        if score is None or not math.isfinite(score) or self.threshold is None:
            return None
        return "abnormal" if score > self.threshold else "normal"

    @torch.no_grad()
    def score_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, S, S, 3) float32 in [0, 1] at `image_size` -> scores (B,), maps (B, S, S).

        Values are returned as computed (NaN included); `predict` turns those into errors."""
        batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        with autocast(self.device, self.info.run.train.amp):
            out = self.method(batch.float().to(self.device))
        return out.image_score.float().cpu().numpy(), out.anomaly_map.float().cpu().numpy()

    def prepare_image(self, image: np.ndarray, source: str) -> np.ndarray:
        """Check an (H, W), (H, W, 1|3) image in [0, 1] and resize it to the model's input."""
        return prepare_image(image, self.image_size, source)

    def predict(
        self,
        inputs: Sequence[np.ndarray | str | Path],
        keep_maps: bool = True,
        keep_images: bool = False,
    ) -> list[Prediction]:
        """Score image files or arrays ((H, W[, 3]) float in [0, 1]); one Prediction each, in
        order. A file that cannot be read, a bad array or a non-finite score is an error row."""
        results: list[Prediction] = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            results += self._predict_chunk(chunk, start, keep_maps, keep_images)
        return results

    def _predict_chunk(
        self, chunk: Sequence, offset: int, keep_maps: bool, keep_images: bool
    ) -> list[Prediction]:
        rows: list[Prediction] = []
        # (row, model-size copy, display-size copy): full-size images never wait for the batch
        ready: list[tuple[int, np.ndarray, np.ndarray | None]] = []
        for i, item in enumerate(chunk):
            source = _source_name(item, offset + i)
            rows.append(Prediction(source=source, threshold=self.threshold))
            try:
                image = item if isinstance(item, np.ndarray) else read_image(_as_path(item, source))
                resized = self.prepare_image(image, source)
                ready.append((i, resized, display_copy(image) if keep_images else None))
            except AnomedError as exc:
                rows[i] = self.error(source, str(exc))
        if ready:
            scores, maps = self.score_batch(np.stack([r for _, r, _ in ready]))
            for (i, _, shown), score, amap in zip(ready, scores, maps, strict=True):
                rows[i] = self.result(rows[i].source, float(score), amap if keep_maps else None)
                if keep_images:
                    rows[i].image = shown
        return rows

    def result(self, source: str, score: float, amap: np.ndarray | None) -> Prediction:
        """A scored input; a non-finite score or map becomes an error (never "normal")."""
        if not math.isfinite(score) or (amap is not None and not np.isfinite(amap).all()):
            return self.error(
                source,
                "the model produced a non-finite score or map (NaN/Inf). Fix: check the "
                "checkpoint's weights and the input's pixel values.",
            )
        return Prediction(
            source=source,
            score=score,
            decision=self.decide(score),
            threshold=self.threshold,
            anomaly_map=amap,
        )

    def error(self, source: str, message: str) -> Prediction:
        return Prediction(source=source, status="error", threshold=self.threshold, error=message)


def _source_name(item: object, index: int) -> str:
    if isinstance(item, np.ndarray):
        return f"array[{index}]"
    if isinstance(item, (str, bytes, os.PathLike)):
        return os.fsdecode(item)
    return f"input[{index}]"


def _as_path(item: object, source: str) -> Path:
    """A file path from str, bytes (non-UTF-8 names) or PathLike; anything else is refused."""
    if not isinstance(item, (str, bytes, os.PathLike)):
        raise AnomedError(
            f"{source}: a {type(item).__name__} is neither a file path nor a numpy array. "
            "Fix: pass paths or (H, W[, 3]) arrays."
        )
    return Path(os.fsdecode(item))


def prepare_image(image: np.ndarray, image_size: int, source: str) -> np.ndarray:
    """Check an (H, W), (H, W, 1|3) image in [0, 1]; resize it to (S, S, 3) float32.

    A module function as well as `Detector.prepare_image`, so decode workers that hold no model
    (the Ray engine's CPU tasks) resize exactly as the detector does."""
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise AnomedError(
            f"{source}: pixels of dtype {image.dtype} are not numbers in [0, 1]. Fix: pass "
            "a float (or 0/1 integer) array."
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or min(image.shape[:2]) < 1:
        raise AnomedError(
            f"{source}: expected an (H, W) or (H, W, 3) image, got shape {image.shape}. "
            "Fix: pass a greyscale or RGB image."
        )
    if min(image.shape[:2]) < MIN_SIDE:
        raise AnomedError(
            f"{source}: {image.shape[1]}x{image.shape[0]} pixels is too small to score (each "
            f"side must be at least {MIN_SIDE} px). Fix: pass the full-size image."
        )
    image = check_pixels(image.astype(np.float32, copy=False), source)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return resize_image(image, image_size)


def load_detector(
    run: str | Path,
    device: str = "auto",
    batch_size: int = 16,
    compile_backbone: bool = False,
) -> Detector:
    """Load a checkpoint folder written by `anomed train` as a warm `Detector`."""
    batch_size = coerce(Positive, batch_size, "batch_size")
    dev = resolve_device(device)
    method, info = load_checkpoint(run, dev)
    if compile_backbone:
        method.backbone.compile_blocks()
    return Detector(method, info, dev, batch_size, Path(run))
