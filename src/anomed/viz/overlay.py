"""Anomaly maps drawn over images: single overlays, ground-truth outlines and PNG grids."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image

from anomed.data.io import shrink_to_side
from anomed.viz.scale import scale_format

MASK_COLOUR = (0, 255, 0)  # ground-truth outline, RGB


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1 | 3) in [0, 1] -> (H, W, 3) float32."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    return np.clip(np.broadcast_to(image, (*image.shape[:2], 3)), 0, 1)


def _resize(amap: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize a 2-D map to (H, W); bilinear for scores, nearest for masks."""
    if amap.shape == shape:
        return amap
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(amap, (shape[1], shape[0]), interpolation=interp)


def heatmap_overlay(
    image: np.ndarray,
    amap: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend a colour-mapped anomaly map over an image; returns (H, W, 3) uint8 RGB.

    `image` is (H, W, 3) (or (H, W)) in [0, 1]; `amap` (h, w) is resized to (H, W) bilinearly.
    Scores are scaled by [vmin, vmax] (default: the map's own range) before colouring, so pass
    common limits to make several overlays comparable."""
    rgb = _as_rgb(image)
    amap = _resize(np.asarray(amap, dtype=np.float32), rgb.shape[:2])
    lo = float(np.min(amap)) if vmin is None else vmin
    hi = float(np.max(amap)) if vmax is None else vmax
    scaled = np.clip((amap - lo) / max(hi - lo, 1e-12), 0, 1)
    colour = matplotlib.colormaps[cmap](scaled)[..., :3]  # (H, W, 3) in [0, 1]
    blend = (1 - alpha) * rgb + alpha * colour
    return np.round(blend * 255).astype(np.uint8)


def mask_contour(
    overlay: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = MASK_COLOUR,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of a uint8 (H, W, 3) overlay with the outline of `mask` drawn on it.

    The mask is resized (nearest) to the overlay if the sizes differ; the line is 1 px up to
    ~240 px images and thicker above, so it stays visible when the image is shown smaller."""
    mask = _resize(np.asarray(mask).astype(np.uint8), overlay.shape[:2], nearest=True)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    out = np.ascontiguousarray(overlay, dtype=np.uint8).copy()
    if thickness is None:
        thickness = max(1, round(min(out.shape[:2]) / 160))
    cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def save_overlay_png(
    path: str | Path,
    image: np.ndarray,
    amap: np.ndarray,
    vmin: float | None,
    vmax: float | None,
    mask: np.ndarray | None = None,
    alpha: float = 0.5,
) -> Path:
    """Write one overlay (and the mask outline) as an RGB PNG at the image's resolution."""
    out = heatmap_overlay(image, amap, vmin, vmax, alpha)
    if mask is not None:
        out = mask_contour(out, mask)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(path)
    return path


def common_limits(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """The 1st and 99th percentiles of all maps together: one colour scale for a grid."""
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(max(hi, lo + 1e-12))


NAME_LINE = 30  # characters of a file name per title line (7 pt text in a 2.6 in cell)
NAME_LINES = 2  # longer names are cut in the middle; the full name is in scores.csv


def short_name(name: str, width: int = NAME_LINE, lines: int = NAME_LINES) -> str:
    """A file name in at most `lines` lines of `width` characters: wrapped at separators where
    possible; what does not fit is cut before the last line's end, kept ("…" marks the cut)."""
    out, rest = [], name
    while len(rest) > width and len(out) < lines - 1:
        cut = max(rest.rfind(c, 0, width) for c in "_-. ")
        cut = cut + 1 if cut >= width // 2 else width
        out.append(rest[:cut])
        rest = rest[cut:]
    if len(rest) > width:
        rest = "…" + rest[-(width - 1) :]
    return "\n".join([*out, rest])


def _cell_title(
    score: float | None,
    label: int | str | None,
    decision: str | None = None,
    name: str | None = None,
) -> str:
    """Short lines: the file name (wrapped or cut), score and model decision, ground truth."""
    first = [] if score is None else [f"score {score:.3g}"]
    if decision is not None:
        first.append(f"model: {decision}")
    truth = None
    if label is not None:
        truth = f"truth: { ({0: 'normal', 1: 'abnormal'}.get(label, str(label))) }"
    top = None if name is None else short_name(name)
    return "\n".join(p for p in (top, " · ".join(first), truth) if p)


def _draw_cells(axes, images, maps, masks, titles, limits, cmap) -> None:
    """One overlay per axis with its title; spare axes stay blank."""
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= len(images):
            continue
        cell = heatmap_overlay(images[i], maps[i], *limits, cmap=cmap)
        if masks is not None and masks[i] is not None:
            cell = mask_contour(cell, masks[i])
        ax.imshow(cell)
        ax.set_title(titles[i], fontsize=7, linespacing=1.15)


def heatmap_grid_figure(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    scores: Sequence[float] | None = None,
    labels: Sequence[int | str] | None = None,
    decisions: Sequence[str | None] | None = None,
    names: Sequence[str] | None = None,
    ncols: int = 4,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "jet",
) -> Figure:
    """The grid of `save_heatmap_grid` as a Figure (constrained layout: titles, colour bar and
    heading get their own room, so nothing overlaps at any image count)."""
    if len(images) != len(maps) or len(images) == 0:
        raise ValueError(f"need one map per image and >= 1 image, got {len(images)}, {len(maps)}")
    note = ""
    if vmin is None or vmax is None:
        auto = common_limits(maps)
        vmin, vmax = (auto[0] if vmin is None else vmin), (auto[1] if vmax is None else vmax)
        note = " (default: 1st-99th percentile of all maps)"
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    width = max(2.6 * ncols + 0.9, 4.0)
    fig = Figure(figsize=(width, 3.0 * nrows + 0.7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    titles = [
        _cell_title(
            None if scores is None else float(scores[i]),
            None if labels is None else labels[i],
            None if decisions is None else decisions[i],
            None if names is None else names[i],
        )
        for i in range(len(images))
    ]
    _draw_cells(axes, images, maps, masks, titles, (vmin, vmax), cmap)
    fmt = scale_format(vmin, vmax)
    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=list(axes), fraction=0.03)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    bar.ax.tick_params(labelsize=7)
    has_outline = masks is not None and any(m is not None and np.any(m) for m in masks)
    outline = "; green outline: ground-truth mask" if has_outline else ""
    heading = f"one colour scale for all cells: [{fmt(vmin)}, {fmt(vmax)}]{note}{outline}"
    fig.suptitle(textwrap.fill(heading, int(width * 72 / (9 * 0.6))), fontsize=9)
    return fig


def save_heatmap_grid(
    path: str | Path,
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    scores: Sequence[float] | None = None,
    labels: Sequence[int | str] | None = None,
    decisions: Sequence[str | None] | None = None,
    names: Sequence[str] | None = None,
    ncols: int = 4,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "jet",
) -> Path:
    """Write a PNG grid of overlays, one colour scale for all; each cell titled with its file
    name (wrapped, or cut in the middle: the full name is in scores.csv), score, the model's
    decision and the ground truth (labelled apart).

    vmin / vmax default to the 1st / 99th percentiles of all maps; the figure states the scale
    and shows it as a colour bar, all its labels in one number format. Ground-truth outlines
    are drawn in green where masks exist."""
    fig = heatmap_grid_figure(
        images, maps, masks, scores, labels, decisions, names, ncols, vmin, vmax, cmap
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


MAX_OVERLAY_SIDE = 1024  # prediction pictures are drawn at most this large (bounded memory)


def _colour_bar(height: int, vmin: float, vmax: float, cmap: str, width: int = 18) -> np.ndarray:
    """A vertical colour bar (H, width + labels, 3) uint8 with its limits written beside it, both
    in one number format (viz.scale) and never cut off: the panel is as wide as the labels."""
    fmt = scale_format(vmin, vmax)
    labels = (fmt(vmax), fmt(vmin))
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    text_width = max(cv2.getTextSize(t, font, size, 1)[0][0] for t in labels)
    ramp = np.linspace(1, 0, height)[:, None].repeat(width, 1)
    bar = np.round(matplotlib.colormaps[cmap](ramp)[..., :3] * 255).astype(np.uint8)
    panel = np.full((height, width + max(64, text_width + 8), 3), 255, np.uint8)
    panel[:, :width] = bar
    for text, y in zip(labels, (12, height - 4), strict=True):
        cv2.putText(panel, text, (width + 3, y), font, size, (0, 0, 0), 1)
    return panel


def save_prediction_png(
    path: str | Path,
    image: np.ndarray,
    amap: np.ndarray,
    score: float,
    decision: str | None,
    threshold: float | None,
    limits: tuple[float | None, float | None] = (None, None),
    cmap: str = "jet",
    max_side: int = MAX_OVERLAY_SIDE,
    note: str | None = None,
) -> Path:
    """The original and its heatmap overlay side by side, a colour bar and a header with the
    score, the decision and the threshold, and `note` (e.g. the domain guard's warning) on a
    second header line; drawn at most `max_side` pixels per panel."""
    rgb = shrink_to_side(_as_rgb(image), max_side)
    amap = np.asarray(amap, dtype=np.float32)
    vmin, vmax = limits
    if vmin is None or vmax is None:
        vmin, vmax = float(amap.min()), float(max(amap.max(), amap.min() + 1e-6))
    over = heatmap_overlay(rgb, amap, vmin, vmax, cmap=cmap)
    original = np.round(rgb * 255).astype(np.uint8)
    gap = np.full((rgb.shape[0], 6, 3), 255, np.uint8)
    body = np.concatenate(
        [original, gap, over, gap, _colour_bar(rgb.shape[0], vmin, vmax, cmap)], 1
    )
    header = np.full((44 if note else 26, body.shape[1], 3), 255, np.uint8)
    verdict = decision or "no threshold"
    thr = "" if threshold is None else f" (threshold {threshold:.4g})"
    text = f"score {score:.4g} -> {verdict}{thr}"
    colour = (200, 0, 0) if decision == "abnormal" else (0, 0, 0)
    cv2.putText(header, text, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    if note:
        font, orange = cv2.FONT_HERSHEY_SIMPLEX, (200, 90, 0)
        cv2.putText(header, f"! {note}", (4, 37), font, 0.45, orange, 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([header, body], 0)).save(path)
    return path
