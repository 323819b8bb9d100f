"""Evaluation plots: ROC curves and normal-vs-abnormal score histograms, written as PNGs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

Scores = Sequence[float] | np.ndarray
Labels = Sequence[int] | np.ndarray


def _new_figure(size: tuple[float, float] = (5.0, 4.5)) -> tuple[Figure, object]:
    """A figure on its own Agg canvas (no pyplot, no global backend state) and its axes."""
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_roc_curves(
    path: str | Path, curves: Mapping[str, tuple[Labels, Scores]], title: str = ""
) -> dict[str, float | None]:
    """Write several ROC curves on one plot, each with its AUROC in the legend.

    A curve whose labels hold one class only has no ROC; it is listed as undefined instead of
    raising. Returns each curve's AUROC (None where undefined)."""
    fig, ax = _new_figure()
    aurocs: dict[str, float | None] = {}
    for name, (labels, scores) in curves.items():
        labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
        prefix = f"{name}: " if name else ""
        if len(np.unique(labels)) < 2:
            aurocs[name] = None
            only = "abnormal" if labels.size and labels[0] == 1 else "normal"
            ax.plot([], [], " ", label=f"{prefix}ROC undefined: one class only ({only})")
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        aurocs[name] = float(roc_auc_score(labels, scores))
        ax.plot(fpr, tpr, lw=1.5, label=f"{prefix}AUROC = {aurocs[name]:.3f}")
    if not any(v is not None for v in aurocs.values()):
        box = {"facecolor": "white", "edgecolor": "grey"}
        ax.text(0.5, 0.5, "ROC undefined: one class only", ha="center", va="center", bbox=box)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return aurocs


def save_roc_curve(
    path: str | Path, labels: Labels, scores: Scores, title: str = ""
) -> float | None:
    """Write one ROC curve with its AUROC in the legend; returns the AUROC (None if one class)."""
    return save_roc_curves(path, {"": (labels, scores)}, title)[""]


def save_score_histogram(
    path: str | Path,
    labels: Labels,
    scores: Scores,
    threshold: float | None = None,
    title: str = "",
) -> Path:
    """Write overlaid histograms of normal and abnormal scores on common bins, with the
    decision threshold as a vertical line when given."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    fig, ax = _new_figure((5.5, 4.0))
    bins = np.histogram_bin_edges(scores, bins=min(30, max(5, len(scores) // 3)))
    for value, name, colour in ((0, "normal", "tab:blue"), (1, "abnormal", "tab:red")):
        part = scores[labels == value]
        if len(part):
            ax.hist(part, bins=bins, alpha=0.55, color=colour, label=f"{name} (n={len(part)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
    ax.set(xlabel="anomaly score", ylabel="images")
    ax.set_title(title or "image scores")
    ax.legend(fontsize=8)
    return _save(fig, path)
