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
from anomed.data.bmad import read_mvfa_shot_file
from anomed.data.datasets import SampleDataset, SupportSet, load_sample, load_support
from anomed.data.layouts import load_dataset
from anomed.data.sample import DatasetSplits
from anomed.data.shots import (
    ShotSplit,
    carve_abnormals,
    read_shot_list,
    sample_shots,
    write_shot_list,
)
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
from anomed.errors import AnomedError
from anomed.methods.base import METHODS, AnomalyMethod, create_method
from anomed.metrics import format_metrics_table
from anomed.published import published_rows
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


def resolve_k_abnormal(cfg: RunConfig) -> int:
    """Labelled abnormal shots: as given, else k for supervised methods and 0 otherwise."""
    if cfg.data.k_abnormal is not None:
        return cfg.data.k_abnormal
    return 0 if METHODS.get(cfg.method).normal_only else cfg.data.k


def _shot_split(cfg: RunConfig, splits: DatasetSplits) -> ShotSplit:
    if cfg.data.shots_file and Path(cfg.data.shots_file).suffix == ".txt":
        return _mvfa_shot_split(cfg, splits)
    if cfg.data.shots_file:
        return read_shot_list(cfg.data.shots_file, splits.root)
    k_abnormal = resolve_k_abnormal(cfg)
    n_abnormal = sum(s.label == 1 for s in splits.train)
    if n_abnormal < k_abnormal:
        raise AnomedError(
            f"{splits.root}: {cfg.method} needs {k_abnormal} labelled abnormal shots but the "
            f"training pool holds {n_abnormal} abnormal images. Fix: pass --abnormal-from-test "
            "to move some abnormal test images into the pool (they leave the test set), or "
            "--k-abnormal 0."
        )
    return sample_shots(
        splits.train, k=cfg.data.k, seed=cfg.data.seed, n_val=cfg.data.n_val, k_abnormal=k_abnormal
    )


def _mvfa_shot_split(cfg: RunConfig, splits: DatasetSplits) -> ShotSplit:
    """Shots from an MVFA support file (repetition = seed); validation from the rest."""
    normal, abnormal = read_mvfa_shot_file(cfg.data.shots_file, splits.root, cfg.data.seed)
    by_path = {s.image: s for s in splits.train}
    missing = [p for p in normal + abnormal if p not in by_path]
    if missing:
        raise AnomedError(f"{cfg.data.shots_file}: {missing[0]} is not in the training pool")
    shots = [by_path[p] for p in normal + abnormal]
    rest = sample_shots(
        [s for s in splits.train if s not in shots], k=0, seed=cfg.data.seed, n_val=cfg.data.n_val
    )
    return ShotSplit(shots=shots, val=rest.val, seed=cfg.data.seed, k=len(normal))


def load_splits(cfg: RunConfig, log: Log) -> DatasetSplits:
    """The target dataset, with abnormal test images moved into the pool when asked."""
    splits = load_dataset(cfg.data.root, cfg.data.layout)
    k_abnormal = resolve_k_abnormal(cfg)
    if cfg.data.carve_abnormal_from_test and k_abnormal > 0:
        available = sum(s.label == 1 for s in splits.test)
        # the shots, plus up to n_val for validation while at least one abnormal stays in test
        n = max(k_abnormal, min(k_abnormal + cfg.data.n_val, available - 1))
        splits = carve_abnormals(splits, n, cfg.data.seed)
        log(
            f"moved {n} abnormal test images of {splits.name} into the training pool "
            f"(k_abnormal={k_abnormal} shots + validation); they are not tested on"
        )
    return splits


def _class_name(splits: DatasetSplits) -> str:
    names = {s.clsname for s in splits.train + splits.test if s.clsname}
    return names.pop() if len(names) == 1 else splits.name


def _training_supports(cfg: RunConfig, split: ShotSplit, size: int) -> list[SupportSet]:
    """Few-shot: the target's shots. Zero-shot: every pool image of the other datasets."""
    if not cfg.data.train_roots:
        return [load_support(split.shots, size)]
    supports = []
    for root in cfg.data.train_roots:
        other = load_dataset(root, "auto")
        supports.append(load_support(other.train, size, _class_name(other)))
    return supports


def train_run(
    cfg: RunConfig, progress: bool = True, log: Log = tqdm.write, eval_before: bool = False
) -> TrainArtifacts:
    """Sample shots, train the method, calibrate on validation data and save a checkpoint."""
    out = Path(cfg.output_dir)
    splits = load_splits(cfg, log)
    split = _shot_split(cfg, splits)
    if cfg.data.train_roots:  # zero-shot: no target shots; validation still from its pool
        split = ShotSplit(shots=[], val=split.shots + split.val, seed=split.seed, k=0)
    device = resolve_device(cfg.train.device)
    backbone = load_backbone(cfg.backbone, device)
    torch.manual_seed(cfg.train.seed)
    method = create_method(cfg.method, backbone, cfg.method_args).to(device)
    if cfg.train.compile:
        backbone.compile_blocks()
    method.class_name = _class_name(splits)
    size = backbone.image_size
    supports = _training_supports(cfg, split, size)
    method.support = None if cfg.data.train_roots else supports[0]
    log(
        f"{cfg.method} on {splits.name}: {_describe(cfg, supports, split)}, "
        f"{len(splits.test)} test images; backbone {cfg.backbone.model} "
        f"({cfg.backbone.pretrained or 'random-init'}) at {size}px on {device}"
    )
    train_set = method.train_dataset(supports, seed=cfg.train.seed)
    val_items = method.validation_items(load_support(split.val, size), seed=cfg.train.seed)
    epochs = cfg.train.epochs or method.cfg.epochs
    if not method.trainable_parameters():  # training-free (memory bank, WinCLIP)
        epochs = 0
    batch = cfg.train.batch_size or method.cfg.batch_size or max(1, len(train_set))  # 0: all
    test_set = SampleDataset(splits.test, size)

    def test_eval() -> EvalResult:
        return evaluate_dataset(
            method, test_set, batch, device, cfg.train.amp, cfg.train.num_workers
        )

    if eval_before:
        method.prepare()
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
        class_name=method.class_name,
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


def _describe(cfg: RunConfig, supports: list[SupportSet], split: ShotSplit) -> str:
    if cfg.data.train_roots:
        names = ", ".join(f"{s.clsname} ({len(s)})" for s in supports)
        return f"zero-shot, trained on {names}, {len(split.val)} validation"
    n_abn = sum(supports[0].labels)
    return (
        f"k={len(supports[0]) - n_abn} normal + {n_abn} abnormal shots, {len(split.val)} validation"
    )


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
    if data_root is None:  # the training dataset: the same images held out of test as in training
        splits = load_splits(info.run, log=lambda _: None)
    else:
        splits = load_dataset(data_root, "auto")
    out = Path(output_dir or Path(checkpoint) / "eval" / splits.name)
    if data_root is not None:  # another dataset: its own class/organ word
        method.class_name = _class_name(splits)
    dataset = SampleDataset(splits.test, method.backbone.image_size)
    batch = batch_size or info.run.train.batch_size or method.cfg.batch_size or 16
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
        **decision_metrics(result.labels, result.scores, cal.threshold, "calibrated"),
        **decision_metrics(result.labels, result.scores, 0.5, "0.5"),
        "seconds": round(seconds, 2),
        "method": info.run.method,
        "backbone": {"model": info.run.backbone.model, "pretrained": info.run.backbone.pretrained},
        "k": len(info.shots),
        "seed": info.run.data.seed,
        "selected_by": info.fit.get("selected_by"),
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=1))
    rows = {label: result.metrics}
    if not info.run.data.train_roots:
        rows.update(published_rows(info.run.method, info.run.data.k, info.class_name))
    decisions_line = (
        f"\nDecisions at the calibrated threshold {cal.threshold:.4f} (validation normals, "
        f"FPR {cal.target_fpr}): accuracy {payload['acc_calibrated']:.3f}, F1 "
        f"{payload['f1_calibrated']:.3f}; at 0.5 (the papers'): accuracy {payload['acc_0.5']:.3f},"
        f" F1 {payload['f1_0.5']:.3f}.\n"
    )
    (out / "metrics.md").write_text(format_metrics_table(rows) + "\n" + decisions_line)
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


def decision_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, name: str
) -> dict[str, float]:
    """Accuracy and F1 of the yes/no decisions `score > threshold`."""
    from sklearn.metrics import f1_score

    predicted = scores > threshold
    truth = labels == 1
    return {
        f"acc_{name}": float(np.mean(predicted == truth)),
        f"f1_{name}": float(f1_score(truth, predicted, zero_division=0.0)),
    }


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
