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
    maps: np.ndarray  # (N, H, W) float16, to bound memory on large test sets
    masks: np.ndarray  # (N, H, W) bool
    has_mask: np.ndarray  # (N,) bool


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
    """Score every batch; collect maps as float16 and compute the metrics."""
    method.eval()
    acc = MetricAccumulator(map_dtype=np.float16)
    labels, scores, maps, masks, has = [], [], [], [], []
    for batch in tqdm(batches, total=total, desc=desc, disable=not progress, unit="batch"):
        with autocast(device, amp):
            if "image" in batch:
                out = method(batch["image"].to(device))
            else:  # frozen features cached by the training loop (engine.cache)
                out = method.forward_features(batch, batch["mask"].shape[-2:])
        amap = out.anomaly_map.float().cpu().numpy()
        score = out.image_score.float().cpu().numpy()
        acc.update(batch["label"], score, batch["mask"], amap, batch["has_mask"])
        labels.append(batch["label"].numpy())
        scores.append(score)
        maps.append(amap.astype(np.float16))
        masks.append(batch["mask"].numpy() > 0.5)
        has.append(batch["has_mask"].numpy())
    result = EvalResult(
        metrics=acc.compute(),
        labels=np.concatenate(labels),
        scores=np.concatenate(scores),
        maps=np.concatenate(maps),
        masks=np.concatenate(masks),
        has_mask=np.concatenate(has),
    )
    if getattr(method.cfg, "normalization", "val") == "paper":
        result = paper_normalized(result)
    return result


def paper_normalized(result: EvalResult) -> EvalResult:
    """The reference implementations' min-max over the whole test set (opt-in, see MVFA).

    Each image's score then depends on every other test image, so it is reported only as a
    way to compare with published tables, never used for decisions.
    """

    def minmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return (x - x.min()) / max(float(x.max() - x.min()), 1e-12)

    maps, scores = minmax(result.maps), minmax(result.scores)
    acc = MetricAccumulator(map_dtype=np.float16)
    acc.update(result.labels, scores, result.masks, maps, result.has_mask)
    return EvalResult(
        acc.compute(), result.labels, scores, maps.astype(np.float16), result.masks, result.has_mask
    )


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
