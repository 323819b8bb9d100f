"""What a run tells its user: the run summary line and the evaluation reports.

Every report says what its numbers came from (method, preset, backbone and whether it is
random-init, k, seed, selection) and nothing else: published rows only where they match the run,
decisions at 0.5 only for methods whose scores are probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from anomed.data.datasets import SupportSet, load_sample
from anomed.data.sample import DatasetSplits
from anomed.engine.checkpoint import CheckpointInfo
from anomed.engine.evaluate import EvalResult
from anomed.methods.base import METHODS
from anomed.metrics import format_metrics_table
from anomed.outputs import write_json, write_text
from anomed.published import SetFingerprint, fingerprint_of, published_rows
from anomed.viz.overlay import save_heatmap_grid
from anomed.viz.plots import save_roc_curve

if TYPE_CHECKING:
    from anomed.config import RunConfig
    from anomed.engine.prepared import PreparedRun


def dataset_summary(splits: DatasetSplits) -> str:
    """Images per split and how the masks were matched: one line, printed for every run."""
    test_abn = [s for s in splits.test if s.label == 1]
    with_mask = sum(s.has_mask for s in test_abn)
    merged = sum(len(s.masks) > 1 for s in splits.test)
    n_norm = sum(s.label == 0 for s in splits.test)
    pool_abn = sum(s.label == 1 for s in splits.train)
    pool = f"{len(splits.train) - pool_abn} normal" + (
        f" + {pool_abn} abnormal" if pool_abn else ""
    )
    masks = (
        f"masks for {with_mask}/{len(test_abn)} abnormal test images"
        + (f" ({merged} with several files merged)" if merged else "")
        if splits.has_masks
        else "no pixel masks (pixel metrics undefined)"
    )
    return f"{splits.name}: pool {pool}; test {n_norm} normal + {len(test_abn)} abnormal; {masks}"


def describe_run(
    cfg: RunConfig,
    run: PreparedRun,
    supports: Sequence[SupportSet],
    size: int,
    device: torch.device,
) -> str:
    """The line every training run prints before it starts."""
    if cfg.data.train_roots:
        names = ", ".join(f"{s.clsname} ({len(s)})" for s in supports)
        shots = f"zero-shot, trained on {names}"
    else:
        n_abn = sum(supports[0].labels)
        shots = f"k={len(supports[0]) - n_abn} normal + {n_abn} abnormal shots"
    return (
        f"{cfg.method} [preset {cfg.preset}] on {run.splits.name} (organ word "
        f"{run.class_name!r}): {shots}, {len(run.split.val)} validation\n"
        f"{dataset_summary(run.splits)}\nbackbone {cfg.backbone.model} "
        f"({cfg.backbone.pretrained or 'random-init'}) at {size}px on {device}; "
        f"output {run.output_dir}"
    )


def describe_backbone(info: CheckpointInfo) -> str:
    """The label of a run's own row: method, preset, backbone (random-init said so)."""
    bb = info.run.backbone
    weights = bb.pretrained or "random-init backbone"
    label = f"{info.run.method} [{info.run.preset}] / {bb.model} ({weights})"
    if info.fit.get("selected_by") == "test-leak":
        label += " [epoch picked on the test set: leaks test labels]"
    return label


def shots_of(info: CheckpointInfo) -> tuple[int, int]:
    """(normal shots k, labelled abnormal shots) of a saved run."""
    k = info.fit.get("k", info.run.data.k)
    return int(k), int(info.fit.get("k_abnormal", 0))


def write_eval_report(
    out: Path,
    result: EvalResult,
    splits: DatasetSplits,
    info: CheckpointInfo,
    label: str = "",
    seconds: float = 0.0,
) -> None:
    """metrics.json, metrics.md, scores.csv, heatmaps.png and roc.png in `out`."""
    label = label or describe_backbone(info)
    cal = info.calibration
    # the threshold is on validation's scale; set-relative test scores have another one
    threshold = None if result.set_relative else cal.threshold
    probabilities = METHODS.get(info.run.method).probability_scores
    k, k_abnormal = shots_of(info)
    payload = {
        **result.metrics,
        "dataset": splits.name,
        "label": label,
        "method": info.run.method,
        "preset": info.run.preset,
        "backbone": {"model": info.run.backbone.model, "pretrained": info.run.backbone.pretrained},
        "k": k,
        "k_abnormal": k_abnormal,
        "seed": info.run.data.seed,
        "selected_by": info.fit.get("selected_by"),
        "n_test": int(len(result.labels)),
        "n_test_abnormal": int((result.labels == 1).sum()),
        "n_pixel_images": int(result.has_mask.sum()) if splits.has_masks else 0,
        "test_split": asdict(fingerprint_of(splits.test, splits.root)),
        "threshold": cal.threshold,
        "target_fpr": cal.target_fpr,
        "scores_relative_to_test_set": result.set_relative,
        **decision_metrics(result.labels, result.scores, threshold, "calibrated"),
        "seconds": round(seconds, 2),
    }
    if probabilities:
        payload.update(decision_metrics(result.labels, result.scores, 0.5, "0.5"))
    write_json(out / "metrics.json", payload)
    rows, note = {label: result.metrics}, ""
    if not info.run.data.train_roots:  # zero-shot protocol runs: engine.protocols' table
        test = SetFingerprint(**payload["test_split"])
        paper, note = published_rows(info.run.method, k, info.class_name, splits.name, test)
        rows.update(paper)
    text = format_metrics_table(rows) + "\n\n" + (f"Note: {note}.\n\n" if note else "")
    text += _decisions_text(payload, probabilities) + "\n"
    write_text(out / "metrics.md", text)
    write_text(out / "scores.csv", _scores_csv(result, splits, threshold))
    save_roc_curve(out / "roc.png", result.labels, result.scores, title=_roc_title(splits, info))
    _write_grid(out / "heatmaps.png", result, splits, cal, threshold)


def saved_test_split(eval_dir: str | Path) -> SetFingerprint | None:
    """The test-set fingerprint an eval report recorded in metrics.json (None: none recorded)."""
    try:
        found = json.loads((Path(eval_dir) / "metrics.json").read_text()).get("test_split")
        return SetFingerprint(**found) if isinstance(found, dict) else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _decisions_text(payload: dict, probabilities: bool) -> str:
    n = payload["n_test"]
    cover = (
        f"Pixel metrics cover {payload['n_pixel_images']} of {n} test images."
        if payload["n_pixel_images"]
        else "No pixel masks: pixel metrics are undefined."
    )
    if payload["threshold"] is None:
        decided = "No calibrated threshold (saved without validation data): no yes/no decisions."
    elif payload.get("scores_relative_to_test_set"):
        decided = (
            "Scores are min-max normalised over this test set (normalization: test, the "
            "reference's protocol), so the threshold calibrated on validation does not apply: "
            "no yes/no decisions here (anomed predict scores single images on validation's "
            "scale and decides)."
        )
    elif payload["acc_calibrated"] is None:
        decided = (
            f"Decisions at the calibrated threshold {payload['threshold']:.4f}: accuracy and F1 "
            "undefined (some test scores are NaN/Inf: those images have no decision)."
        )
    else:
        decided = (
            f"Decisions at the calibrated threshold {payload['threshold']:.4f} (validation "
            f"normals, FPR {payload['target_fpr']}): accuracy {payload['acc_calibrated']:.3f}, "
            f"F1 {payload['f1_calibrated']:.3f}."
        )
    if probabilities and payload["acc_0.5"] is not None:
        decided += (
            " Decisions at 0.5 (the papers' rule; this method's scores are probabilities): "
            f"accuracy {payload['acc_0.5']:.3f}, F1 {payload['f1_0.5']:.3f}."
        )
    return f"{n} test images ({payload['n_test_abnormal']} abnormal). {cover}\n{decided}"


def _scores_csv(result: EvalResult, splits: DatasetSplits, threshold: float | None) -> str:
    rows = ["file,label,score,decision"]
    for s, y, score in zip(splits.test, result.labels, result.scores, strict=True):
        decision = decide(float(score), threshold)
        name = str(s.image.relative_to(splits.root))
        if any(c in name for c in ',"\n'):
            name = '"' + name.replace('"', '""') + '"'
        rows.append(f"{name},{y},{_num(score)},{decision or ''}")
    return "\n".join(rows) + "\n"


def _num(value: float) -> str:
    return f"{value:.6f}" if np.isfinite(value) else ""


def decide(score: float, threshold: float | None) -> str | None:
    """abnormal / normal at a threshold; None without a threshold or a finite score."""
    if threshold is None or not np.isfinite(score):
        return None
    return "abnormal" if score > threshold else "normal"


def _roc_title(splits: DatasetSplits, info: CheckpointInfo) -> str:
    k, k_abn = shots_of(info)
    shots = f"k={k}" + (f"+{k_abn} abnormal" if k_abn else "")
    return (
        f"{splits.name}: {info.run.method} [{info.run.preset}], {shots}, seed {info.run.data.seed}"
    )


def _write_grid(
    path: Path, result: EvalResult, splits: DatasetSplits, cal, threshold: float | None
) -> None:
    pick = _grid_picks(result.labels, result.scores)
    if not pick:
        return
    images = [load_sample(splits.test[i], result.maps.shape[-1])[0] for i in pick]
    save_heatmap_grid(
        path,
        images,
        [np.nan_to_num(result.maps[i].astype(np.float32)) for i in pick],
        masks=[result.masks[i] if result.has_mask[i] else None for i in pick]
        if splits.has_masks
        else None,
        scores=[float(result.scores[i]) for i in pick],
        labels=[int(result.labels[i]) for i in pick],
        decisions=[decide(float(result.scores[i]), threshold) for i in pick],
        names=[splits.test[i].image.name for i in pick],
        vmin=cal.map_min,
        vmax=cal.map_max,
    )


def decision_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float | None, name: str
) -> dict[str, float | None]:
    """Accuracy and F1 of the yes/no decisions `score > threshold`; None without a threshold
    or when a score is non-finite (such an image has no decision, never "normal")."""
    from sklearn.metrics import f1_score

    if threshold is None or not np.isfinite(scores).all():
        return {f"acc_{name}": None, f"f1_{name}": None}
    predicted = np.asarray(scores) > threshold
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
        idx = idx[np.argsort(np.nan_to_num(scores[idx], nan=-np.inf))]
        take = np.linspace(0, len(idx) - 1, num=min(n // 2, len(idx))).round().astype(int)
        picks += idx[take].tolist() if len(idx) else []
    return picks
