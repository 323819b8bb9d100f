"""Run a detector over a set of images and score it; calibrate its decision threshold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from anomed.data.datasets import collate
from anomed.engine.device import autocast
from anomed.methods.base import AnomalyMethod
from anomed.metrics import MetricAccumulator


@dataclass
class EvalResult:
    """Scores, maps and metrics of one pass over a labelled set."""

    metrics: dict[str, float | None]
    labels: np.ndarray  # (N,)
    scores: np.ndarray  # (N,)
    # (N, H, W) float32: float16 ties close scores and shifts pixel metrics (750 maps at
    # 240 px: 173 MB, the pixel metrics' own copies and sorts peak near 1 GB either way)
    maps: np.ndarray
    masks: np.ndarray  # (N, H, W) bool
    has_mask: np.ndarray  # (N,) bool
    # scores rescaled over this very set (finalize_test, e.g. the references' test-set min-max):
    # a threshold calibrated on another set does not apply to them
    set_relative: bool = False


@torch.no_grad()
def run_batches(
    method: AnomalyMethod,
    batches: Iterable[dict],
    device: torch.device,
    amp: bool = True,
    progress: bool = False,
    total: int | None = None,
    desc: str = "eval",
) -> EvalResult:
    """Score every batch; collect maps as float32; let the method finalise the outputs of the
    whole set (`finalize_test`, e.g. a min-max over it) and compute the metrics."""
    method.eval()
    labels, scores, maps, masks, has = [], [], [], [], []
    parts: dict[str, list[np.ndarray]] = {}
    for batch in tqdm(batches, total=total, desc=desc, disable=not progress, unit="batch"):
        with autocast(device, amp):
            if "image" in batch:
                out = method(batch["image"].to(device))
            else:  # frozen features cached by the training loop (engine.cache)
                out = method.forward_features(batch, batch["mask"].shape[-2:])
        for key, value in (out.parts or {}).items():  # float32: set-wide min-max needs it
            parts.setdefault(key, []).append(value.float().cpu().numpy())
        labels.append(batch["label"].numpy())
        scores.append(out.image_score.float().cpu().numpy())
        maps.append(out.anomaly_map.float().cpu().numpy())
        masks.append(batch["mask"].numpy() > 0.5)
        has.append(batch["has_mask"].numpy())
    final_maps, final_scores = method.finalize_test(
        np.concatenate(maps),
        np.concatenate(scores),
        {key: np.concatenate(values) for key, values in parts.items()},
    )
    result = EvalResult(
        metrics={},
        labels=np.concatenate(labels),
        scores=np.asarray(final_scores, dtype=np.float32),
        maps=np.asarray(final_maps, dtype=np.float32),
        masks=np.concatenate(masks),
        has_mask=np.concatenate(has),
        set_relative=bool(parts),
    )
    result.metrics = _metrics(result)
    return result


def _metrics(result: EvalResult) -> dict[str, float | None]:
    acc = MetricAccumulator(map_dtype=np.float32)
    acc.update(result.labels, result.scores, result.masks, result.maps, result.has_mask)
    return acc.compute()


def evaluate_dataset(
    method: AnomalyMethod,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    amp: bool = True,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "eval",
) -> EvalResult:
    """Evaluate on a dataset of items (see data.datasets)."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers
    )
    return run_batches(method, loader, device, amp, progress, len(loader), desc)


def evaluate_items(
    method: AnomalyMethod,
    items: Sequence[dict],
    batch_size: int,
    device: torch.device,
    amp: bool = True,
) -> EvalResult:
    """Evaluate on in-memory items (validation sets)."""
    batches = (collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size))
    return run_batches(method, batches, device, amp)


def calibrate_threshold(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The score above which at most `target_fpr` of validation normals fall.

    With few normals the achievable false-positive rates are coarse (multiples of 1/n); the
    threshold errs towards fewer false positives.
    """
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if scores.size == 0:
        return float("nan")
    allowed = int(np.floor(target_fpr * scores.size))  # normals allowed above the threshold
    return float(scores[scores.size - 1 - allowed])


def map_range(maps: np.ndarray, labels: np.ndarray | None = None) -> tuple[float, float]:
    """A fixed colour scale for heatmaps from validation maps: (1st, 99.9th) percentile."""
    values = np.asarray(maps, dtype=np.float32).ravel()
    lo, hi = np.percentile(values, [1.0, 99.9])
    return float(lo), float(max(hi, lo + 1e-6))
