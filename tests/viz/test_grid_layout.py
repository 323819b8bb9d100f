"""The heatmap grid people look at: no title overlaps another title, an image, the heading or
the colour bar at any image count, long file names included; the colour bar's labels (and the
prediction overlay's) share one number format."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.transforms import Bbox

from anomed.viz.overlay import _cell_title, heatmap_grid_figure, short_name
from anomed.viz.scale import scale_decimals, scale_format

LONG = "sub-{i:04d}_ses-baseline_acq-highres_run-02_T1w_axial_slice_0123_{kind}.png"


def _grid(n: int, vmin=None, vmax=None):
    rng = np.random.default_rng(n)
    images = [rng.random((64, 64)).astype(np.float32) for _ in range(n)]
    maps = [rng.random((16, 16)).astype(np.float32) for _ in range(n)]
    masks = [np.eye(64, dtype=bool) if i % 2 else None for i in range(n)]
    labels = [i % 2 for i in range(n)]
    names = [LONG.format(i=i, kind="abnormal_tumour" if i % 2 else "normal") for i in range(n)]
    return heatmap_grid_figure(
        images, maps, masks, scores=list(rng.random(n) * 1e-3 + 0.731), labels=labels,
        decisions=["abnormal" if i % 3 else "normal" for i in range(n)], names=names,
        vmin=vmin, vmax=vmax,
    )  # fmt: skip


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)


@pytest.mark.parametrize("n", [1, 7, pytest.param(40, marks=pytest.mark.slow)])
def test_grid_titles_never_overlap(n: int) -> None:
    fig = _grid(n)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    cells = [ax for ax in fig.axes if ax.images][:n]
    bar = [ax for ax in fig.axes if not ax.images and ax.get_visible() and ax.get_ylabel() == ""]
    assert len(cells) == n
    boxes = {f"title {i}": ax.title.get_window_extent(renderer) for i, ax in enumerate(cells)}
    boxes |= {f"image {i}": ax.images[0].get_window_extent(renderer) for i, ax in enumerate(cells)}
    boxes["heading"] = fig._suptitle.get_window_extent(renderer)
    boxes["colour bar"] = fig.axes[-1].get_tightbbox(renderer)
    assert bar  # the colour bar is an axes of its own
    names = list(boxes)
    for i, a in enumerate(names):
        inside = Bbox.intersection(boxes[a], fig.bbox)
        assert (
            inside is not None
            and _overlap(boxes[a], fig.bbox) >= boxes[a].width * (boxes[a].height) - 1
        ), f"{a} sticks out of the figure"
        for b in names[i + 1 :]:
            assert _overlap(boxes[a], boxes[b]) < 1.0, f"{n} images: {a} overlaps {b}"


def test_long_names_are_wrapped_or_cut_never_longer_than_two_lines() -> None:
    name = LONG.format(i=7, kind="abnormal_tumour")
    short = short_name(name)
    lines = short.split("\n")
    assert len(lines) == 2 and all(len(line) <= 30 for line in lines)
    assert lines[0] == name[: len(lines[0])] and short.endswith("abnormal_tumour.png")
    assert "…" in lines[1]
    assert short_name("case_01.png") == "case_01.png"
    title = _cell_title(0.9, 1, "normal", name)
    assert "model: normal" in title and "truth: abnormal" in title


@pytest.mark.parametrize("limits", [(0.0, 1.0), (0.6512, 0.7734), (-3.0, 250.0), (2e-6, 3e-5)])
def test_colour_bar_labels_share_one_format(limits) -> None:
    fig = _grid(3, *limits)
    fig.canvas.draw()
    bar = fig.axes[-1]
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert len(labels) >= 2, labels
    assert bar.yaxis.get_offset_text().get_text() == ""  # no "1e-5" or "+0.65" aside
    shapes = {re.sub(r"\d", "0", label.lstrip("-")) for label in labels}
    decimals = {len(s.split(".")[1].split("e")[0]) if "." in s else 0 for s in shapes}
    assert len(decimals) == 1, labels
    heading = fig._suptitle.get_text()
    fmt = scale_format(*limits)
    assert f"[{fmt(limits[0])}, {fmt(limits[1])}]" in heading.replace("\n", " ")


def test_scale_format_rules() -> None:
    assert scale_format(0, 1)(0.5) == "0.50"
    assert scale_format(0.12, 0.87)(0.12) == "0.120"
    assert scale_format(-3, 250)(124.4) == "124"
    assert scale_format(1e-6, 3e-5)(1.55e-5) == "1.55e-05"
    assert scale_format(-0.2, 0.2)(-1e-9) == "0.000"  # no "-0.000"
    assert scale_decimals(0.5, 0.5) == 3 and scale_decimals(2e5, 3e6) is None
    assert scale_format(0, 1)(float("nan")) == "nan"
