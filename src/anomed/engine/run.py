"""End-to-end jobs the CLI and the Python API call: train a run, evaluate a checkpoint.

A training run is four steps, each a function: `prepare_run` (check the config and the output
folder, read the dataset, draw the shots; nothing heavy and nothing written), `fit` (engine.
train), `calibrate` (threshold and heatmap scale from validation data) and `save_run` (one
atomic folder). Report writing lives in engine.reports.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from anomed.backbone import load_backbone
from anomed.config import Positive, RunConfig, coerce, from_dict, to_dict
from anomed.data.bmad import read_mvfa_shot_file
from anomed.data.datasets import SampleDataset, SupportSet, load_support
from anomed.data.layouts import LAYOUTS, load_dataset
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
from anomed.engine.prepared import PreparedRun
from anomed.engine.reports import describe_run, write_eval_report
from anomed.engine.train import FitResult, fit, resolve_schedule
from anomed.errors import AnomedError
from anomed.methods.base import (
    METHODS,
    AnomalyMethod,
    backbone_refusal,
    create_method,
    method_config_dict,
    run_defaults,
)
from anomed.outputs import check_output_dir, staged_dir, write_json

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


def validate_run_config(cfg: RunConfig) -> RunConfig:
    """Check what field types cannot: registered names and the method's own options.

    The method options are checked against the method's config class here, so a typo
    (`method_args.image_loss=sigmod`) fails before any data are read."""
    cfg = from_dict(RunConfig, to_dict(cfg))  # every field re-checked (objects may be mutated)
    METHODS.get(cfg.method)
    if cfg.data.layout != "auto":
        LAYOUTS.get(cfg.data.layout)
    method_config_dict(cfg.method, cfg.method_args, cfg.preset)
    backbone_refusal(cfg.method, cfg.backbone.model)
    if METHODS.get(cfg.method).needs_shots and cfg.data.k < 1 and not cfg.data.train_roots:
        raise AnomedError(
            f"data.k: {cfg.method} needs at least one normal shot (k >= 1). Fix: pass --k 1 or "
            "more, or use the zero-shot protocol (anomed zeroshot)."
        )
    if not cfg.data.root:
        raise AnomedError(
            "no dataset given. Fix: pass --data PATH (e.g. a folder made by `anomed data phantom`)"
        )
    return cfg


def resolve_preset(cfg: RunConfig) -> RunConfig:
    """Fill the run-level fields left unset (None) with the preset's choice for the method
    (`AnomalyMethod.presets`), in place; the saved config.yaml then records what was used.
    The method's own options are resolved when it is built (explicit method_args win)."""
    for key, value in run_defaults(cfg.method, cfg.preset).items():
        section, name = key.split(".")
        part = getattr(cfg, section)
        if getattr(part, name) is None:
            setattr(part, name, value)
    return cfg


def default_output_dir(cfg: RunConfig) -> str:
    """runs/<method>-<dataset>-k<k>-s<seed>: distinct runs never share a default folder."""
    dataset = Path(cfg.data.root.rstrip("/\\")).name or "data"
    return f"runs/{cfg.method}-{dataset}-k{cfg.data.k}-s{cfg.data.seed}"


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


def class_name_of(splits: DatasetSplits, override: str = "") -> str:
    """The organ/class word of a dataset: the user's, else the layout's, else the folder's."""
    if override:
        return override
    names = {s.clsname for s in splits.train + splits.test if s.clsname}
    return names.pop() if len(names) == 1 else splits.name


def prepare_run(cfg: RunConfig, overwrite: bool = False, log: Log = tqdm.write) -> PreparedRun:
    """Check everything that can be checked before training; read the data; draw the shots."""
    validate_run_config(cfg)
    resolve_preset(cfg)  # in place: the run's own copy (train_run), saved as resolved
    if cfg.data.train_roots:  # zero-shot: nothing of the target is trained on
        cfg.data.k, cfg.data.k_abnormal = 0, 0
    output = cfg.output_dir or default_output_dir(cfg)
    _absolute_data_paths(cfg)
    keep = [cfg.data.shots_file] if cfg.data.shots_file else []
    inputs = [cfg.data.root, *cfg.data.train_roots]
    out = check_output_dir(output, overwrite, inputs=inputs, protect=keep)
    splits = load_splits(cfg, log)
    split = _shot_split(cfg, splits)
    if cfg.data.train_roots:  # zero-shot: validation still from the target's pool
        split = ShotSplit(shots=[], val=split.shots + split.val, seed=split.seed, k=0)
    if not split.val and not cfg.train.allow_uncalibrated:
        raise AnomedError(
            f"{splits.root}: no validation images are left in the training pool (k={cfg.data.k}"
            f" of {sum(s.label == 0 for s in splits.train)} normals, data.n_val="
            f"{cfg.data.n_val}), so no decision threshold can be calibrated. Fix: use a smaller "
            "--k (or a larger data.n_val) to leave validation images, or pass --set "
            "train.allow_uncalibrated=true to save a detector without yes/no decisions."
        )
    return PreparedRun(cfg, splits, split, out, class_name_of(splits, cfg.data.class_name))


def _absolute_data_paths(cfg: RunConfig) -> None:
    """Store absolute data paths (in place) so the saved run evaluates from any folder."""
    cfg.data.root = os.path.abspath(cfg.data.root)
    cfg.data.train_roots = [os.path.abspath(r) for r in cfg.data.train_roots]
    if cfg.data.shots_file:
        cfg.data.shots_file = os.path.abspath(cfg.data.shots_file)


def _training_supports(cfg: RunConfig, split: ShotSplit, size: int) -> list[SupportSet]:
    """Few-shot: the target's shots. Zero-shot: every pool image of the other datasets."""
    if not cfg.data.train_roots:
        return [load_support(split.shots, size)]
    supports = []
    for root in cfg.data.train_roots:
        other = load_dataset(root, "auto")
        supports.append(load_support(other.train, size, class_name_of(other)))
    return supports


def build_method(cfg: RunConfig, device: torch.device) -> AnomalyMethod:
    """The backbone and the method on it, initialised from `train.seed`."""
    backbone = load_backbone(cfg.backbone, device)
    torch.manual_seed(cfg.train.seed)
    method = create_method(cfg.method, backbone, cfg.method_args, cfg.preset).to(device)
    if cfg.train.compile:
        backbone.compile_blocks()
    return method


def train_run(
    cfg: RunConfig,
    progress: bool = True,
    log: Log = tqdm.write,
    eval_before: bool = False,
    overwrite: bool = False,
) -> TrainArtifacts:
    """prepare -> fit -> calibrate -> save: sample shots, train, calibrate on validation data
    and write the run folder (replacing an old one only with `overwrite`, and only at the end)."""
    cfg = copy.deepcopy(cfg)  # the saved run fills in defaults; the caller's object stays
    run = prepare_run(cfg, overwrite, log)
    device = resolve_device(cfg.train.device)
    method = build_method(cfg, device)
    size = method.backbone.image_size
    supports = _training_supports(cfg, run.split, size)
    validation = load_support(run.split.val, size)
    method.setup(
        supports,
        run.class_name,
        validation,
        target=None if cfg.data.train_roots else supports[0],
        seed=cfg.train.seed,
    )
    log(describe_run(cfg, run, supports, size, device))
    train_set = method.train_dataset(supports, seed=cfg.train.seed)
    val_items = method.validation_items(validation, seed=cfg.train.seed)
    epochs, batch = resolve_schedule(method, cfg.train.epochs, cfg.train.batch_size, len(train_set))
    test_set = SampleDataset(run.splits.test, size)

    def test_eval() -> EvalResult:
        return evaluate_dataset(
            method, test_set, batch, device, cfg.train.amp, cfg.train.num_workers
        )

    if eval_before:
        method.prepare()
    before = test_eval() if eval_before else None
    result = fit(
        method, train_set, val_items, cfg.train, epochs, batch, device, test_eval, progress, log
    )
    calibration = calibrate(method, val_items, batch, device, cfg.train.target_fpr, cfg.train.amp)
    info = CheckpointInfo(
        run=cfg,
        calibration=calibration,
        shots=[str(s.image.relative_to(run.splits.root)) for s in run.split.shots],
        class_name=run.class_name,
        fit={
            "epochs": epochs,
            "batch_size": batch,
            "best_epoch": result.best_epoch,
            "selected_by": result.selected_by,
            "seconds": round(result.seconds, 2),
            "k": run.split.k,
            "k_abnormal": sum(s.label == 1 for s in run.split.shots),
            "n_val": len(run.split.val),
        },
    )
    save_run(run, method, info, result)
    return TrainArtifacts(method, info, run.splits, result, run.output_dir, before)


def save_run(run: PreparedRun, method: AnomalyMethod, info: CheckpointInfo, fit: FitResult) -> None:
    """Write the checkpoint, shot list and history into a new folder that then replaces
    `run.output_dir` whole (see anomed.outputs.staged_dir)."""
    with staged_dir(run.output_dir) as stage:
        write_shot_list(stage / "shots.yaml", run.split, run.splits.root)
        save_checkpoint(stage, method, info)
        write_json(stage / "history.json", fit.history)


def calibrate(
    method: AnomalyMethod,
    val_items: list[dict],
    batch: int,
    device: torch.device,
    target_fpr: float,
    amp: bool = True,
) -> Calibration:
    """Threshold at `target_fpr` on validation normals; heatmap scale from validation maps.

    Without validation normals (an explicit `train.allow_uncalibrated`) no threshold is set."""
    if not val_items:
        return Calibration(target_fpr=target_fpr)
    res = evaluate_items(method, val_items, batch, device, amp)
    finite = np.isfinite(res.scores) & np.isfinite(res.maps).all(axis=(1, 2))  # (N,)
    if not finite.all():  # a NaN threshold or colour scale would be saved, refused at load
        raise AnomedError(
            f"calibration: the trained model gives a non-finite (NaN/Inf) score or map on "
            f"{int((~finite).sum())} of {finite.size} validation images, so no threshold can be "
            "calibrated; nothing was saved. Fix: retrain (e.g. with a lower learning rate or "
            "another --seed), and check the validation images."
        )
    lo, hi = map_range(res.maps)
    normals = res.scores[res.labels == 0]
    threshold = calibrate_threshold(normals, target_fpr) if normals.size else None
    return Calibration(threshold=threshold, target_fpr=target_fpr, map_min=lo, map_max=hi)


def eval_run(
    checkpoint: str | Path,
    data_root: str | None = None,
    output_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
    label: str = "",
    overwrite: bool = False,
    class_name: str = "",
    num_workers: int | None = None,
) -> tuple[EvalResult, Path]:
    """Evaluate a checkpoint on a dataset's test split (default: the dataset it was trained on)."""
    if batch_size is not None:
        batch_size = coerce(Positive, batch_size, "--batch-size")
    dev = resolve_device(device)
    method, info = load_checkpoint(checkpoint, dev)
    splits = eval_splits(info, data_root)
    if data_root is not None:
        method.set_class_name(class_name_of(splits, class_name))
    out = Path(checkpoint) / "eval" / splits.name if output_dir is None else output_dir
    out = check_output_dir(out, overwrite, inputs=[splits.root], protect=[checkpoint])
    dataset = SampleDataset(splits.test, method.backbone.image_size)
    batch = batch_size or info.fit.get("batch_size") or resolve_schedule(method, 1, None, 16)[1]
    import time

    start = time.perf_counter()
    workers = info.run.train.num_workers if num_workers is None else num_workers
    result = evaluate_dataset(
        method, dataset, batch, dev, info.run.train.amp, workers, progress=progress, desc="eval"
    )
    seconds = time.perf_counter() - start
    with staged_dir(out) as stage:
        write_eval_report(stage, result, splits, info, label, seconds)
    return result, out


def eval_splits(info: CheckpointInfo, data_root: str | None) -> DatasetSplits:
    """The dataset to test on: `data_root`, or the training dataset when None. The training
    dataset (also when named again) is read as in training: its layout, and the abnormal
    images moved into the training pool (shots) kept out of the test set."""
    trained_on = info.run.data.root
    if data_root is None or os.path.realpath(data_root) == os.path.realpath(trained_on):
        return load_splits(info.run, log=lambda _: None)
    return load_dataset(data_root, "auto")


def history(run_dir: str | Path) -> list[dict]:
    """The per-epoch log of a saved run."""
    return json.loads((Path(run_dir) / "history.json").read_text())
