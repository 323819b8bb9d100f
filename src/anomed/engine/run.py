"""End-to-end jobs the CLI calls: train a run, evaluate a checkpoint, write the reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from anomed.backbone import load_backbone
from anomed.config import RunConfig, save_yaml
from anomed.data.datasets import SampleDataset, load_sample
from anomed.data.layouts import load_dataset
from anomed.data.sample import DatasetSplits, Sample
from anomed.data.shots import ShotSplit, read_shot_list, sample_shots, write_shot_list
from anomed.engine.checkpoint import Calibration, CheckpointInfo, load_checkpoint, save_checkpoint
from anomed.engine.device import resolve_device
from anomed.engine.evaluate import (
    EvalResult,
    calibrate_threshold,
    evaluate_dataset,
    evaluate_items,
    map_range,
)
from anomed.engine.train import FitResult, fit
from anomed.methods.base import AnomalyMethod, create_method
from anomed.metrics import format_metrics_table
from anomed.viz.overlay import save_heatmap_grid
from anomed.viz.plots import save_roc_curve

Log = Callable[[str], None]


@dataclass
class TrainArtifacts:
    """What `train_run` returns: the trained method and where it was saved."""

    method: AnomalyMethod
    info: CheckpointInfo
    splits: DatasetSplits
    fit: FitResult
    output_dir: Path
    before: EvalResult | None = None  # the untrained model on the test set, when asked


def _shot_split(cfg: RunConfig, splits: DatasetSplits) -> ShotSplit:
    if cfg.data.shots_file:
        return read_shot_list(cfg.data.shots_file, splits.root)
    return sample_shots(
        splits.train,
        k=cfg.data.k,
        seed=cfg.data.seed,
        n_val=cfg.data.n_val,
        k_abnormal=cfg.data.k_abnormal,
    )


def _load_arrays(samples: list[Sample], size: int) -> tuple[list, list[int], list]:
    pairs = [load_sample(s, size) for s in samples]
    return [p[0] for p in pairs], [s.label for s in samples], [p[1] for p in pairs]


def train_run(
    cfg: RunConfig, progress: bool = True, log: Log = tqdm.write, eval_before: bool = False
) -> TrainArtifacts:
    """Sample shots, train the method, calibrate on validation data and save a checkpoint."""
    out = Path(cfg.output_dir)
    splits = load_dataset(cfg.data.root, cfg.data.layout)
    split = _shot_split(cfg, splits)
    device = resolve_device(cfg.train.device)
    backbone = load_backbone(cfg.backbone, device)
    torch.manual_seed(cfg.train.seed)
    method = create_method(cfg.method, backbone, cfg.method_args).to(device)
    size = backbone.image_size
    log(
        f"{cfg.method} on {splits.name}: k={len(split.shots)} shots, {len(split.val)} validation, "
        f"{len(splits.test)} test images; backbone {cfg.backbone.model} "
        f"({cfg.backbone.pretrained or 'random-init'}) at {size}px on {device}"
    )
    train_set = method.train_dataset(*_load_arrays(split.shots, size), seed=cfg.train.seed)
    val_items = method.validation_items(*_load_arrays(split.val, size), seed=cfg.train.seed)
    epochs = cfg.train.epochs or method.cfg.epochs
    batch = cfg.train.batch_size or method.cfg.batch_size
    test_set = SampleDataset(splits.test, size)

    def test_eval() -> EvalResult:
        return evaluate_dataset(
            method, test_set, batch, device, cfg.train.amp, cfg.train.num_workers
        )

    before = test_eval() if eval_before else None
    result = fit(
        method,
        train_set,
        val_items,
        cfg.train,
        epochs,
        batch,
        device,
        test_eval=test_eval,
        progress=progress,
        log=log,
    )
    info = CheckpointInfo(
        run=cfg,
        calibration=calibrate(
            method, val_items, batch, device, cfg.train.target_fpr, cfg.train.amp
        ),
        shots=[str(s.image.relative_to(splits.root)) for s in split.shots],
        fit={
            "epochs": epochs,
            "best_epoch": result.best_epoch,
            "selected_by": result.selected_by,
            "seconds": round(result.seconds, 2),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    write_shot_list(out / "shots.yaml", split, splits.root)
    save_checkpoint(out, method, info)
    (out / "history.json").write_text(json.dumps(result.history, indent=1))
    return TrainArtifacts(method, info, splits, result, out, before)


def calibrate(
    method: AnomalyMethod,
    val_items: list[dict],
    batch: int,
    device: torch.device,
    target_fpr: float,
    amp: bool = True,
) -> Calibration:
    """Threshold at `target_fpr` on validation normals; heatmap scale from validation maps."""
    if not val_items:
        return Calibration(target_fpr=target_fpr)
    res = evaluate_items(method, val_items, batch, device, amp)
    lo, hi = map_range(res.maps)
    threshold = calibrate_threshold(res.scores[res.labels == 0], target_fpr)
    return Calibration(threshold=threshold, target_fpr=target_fpr, map_min=lo, map_max=hi)


def eval_run(
    checkpoint: str | Path,
    data_root: str | None = None,
    output_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
    label: str = "",
) -> tuple[EvalResult, Path]:
    """Evaluate a checkpoint on a dataset's test split (default: the dataset it was trained on)."""
    dev = resolve_device(device)
    method, info = load_checkpoint(checkpoint, dev)
    root = data_root or info.run.data.root
    splits = load_dataset(root, info.run.data.layout if data_root is None else "auto")
    out = Path(output_dir or Path(checkpoint) / "eval" / splits.name)
    dataset = SampleDataset(splits.test, method.backbone.image_size)
    batch = batch_size or info.run.train.batch_size or method.cfg.batch_size
    start = time.perf_counter()
    result = evaluate_dataset(
        method,
        dataset,
        batch,
        dev,
        info.run.train.amp,
        progress=progress,
        desc=f"eval {splits.name}",
    )
    seconds = time.perf_counter() - start
    write_eval_report(out, result, splits, info, label or describe_backbone(info), seconds)
    return result, out


def describe_backbone(info: CheckpointInfo) -> str:
    bb = info.run.backbone
    weights = bb.pretrained or "random-init backbone"
    label = f"{info.run.method} / {bb.model} ({weights})"
    if info.fit.get("selected_by") == "test-leak":
        label += " [epoch picked on the test set: leaks test labels]"
    return label


def write_eval_report(
    out: Path,
    result: EvalResult,
    splits: DatasetSplits,
    info: CheckpointInfo,
    label: str,
    seconds: float = 0.0,
) -> None:
    """metrics.json, metrics.md, scores.csv, heatmaps.png and roc.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cal = info.calibration
    decisions = result.scores > cal.threshold
    payload = {
        **result.metrics,
        "dataset": splits.name,
        "label": label,
        "n_test": int(len(result.labels)),
        "threshold": cal.threshold,
        "accuracy_at_threshold": float(np.mean(decisions == (result.labels == 1))),
        "seconds": round(seconds, 2),
        "method": info.run.method,
        "backbone": {"model": info.run.backbone.model, "pretrained": info.run.backbone.pretrained},
        "k": len(info.shots),
        "seed": info.run.data.seed,
        "selected_by": info.fit.get("selected_by"),
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=1))
    (out / "metrics.md").write_text(format_metrics_table({label: result.metrics}) + "\n")
    rows = ["file,label,score,decision"]
    for s, y, score, d in zip(splits.test, result.labels, result.scores, decisions, strict=True):
        rows.append(f"{s.image.relative_to(splits.root)},{y},{score:.6f},{int(d)}")
    (out / "scores.csv").write_text("\n".join(rows) + "\n")
    save_roc_curve(out / "roc.png", result.labels, result.scores, title=f"{splits.name}: {label}")
    pick = _grid_picks(result.labels, result.scores)
    images = [load_sample(splits.test[i], result.maps.shape[-1])[0] for i in pick]
    save_heatmap_grid(
        out / "heatmaps.png",
        images,
        [result.maps[i].astype(np.float32) for i in pick],
        masks=[result.masks[i] if result.has_mask[i] else None for i in pick],
        scores=[float(result.scores[i]) for i in pick],
        labels=[int(result.labels[i]) for i in pick],
        vmin=cal.map_min,
        vmax=cal.map_max,
    )


def _grid_picks(labels: np.ndarray, scores: np.ndarray, n: int = 8) -> list[int]:
    """Up to n/2 abnormal and n/2 normal test images, evenly spread over the score order."""
    picks: list[int] = []
    for cls in (1, 0):
        idx = np.flatnonzero(labels == cls)
        idx = idx[np.argsort(scores[idx])]
        take = np.linspace(0, len(idx) - 1, num=min(n // 2, len(idx))).round().astype(int)
        picks += idx[take].tolist() if len(idx) else []
    return picks


def save_run_config(cfg: RunConfig, path: Path) -> None:
    save_yaml(path, cfg)
