"""Overlays, heat-map grids and evaluation plots."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from anomed.viz.overlay import (
    common_limits,
    heatmap_overlay,
    mask_contour,
    save_heatmap_grid,
    save_overlay_png,
)
from anomed.viz.plots import save_roc_curve, save_roc_curves, save_score_histogram


def _image(h: int = 32, w: int = 32) -> np.ndarray:
    return np.full((h, w, 3), 0.5, np.float32)


def _ramp_map(h: int = 32, w: int = 32) -> np.ndarray:
    return np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def test_overlay_shape_dtype_and_resizes_the_map():
    out = heatmap_overlay(_image(40, 48), np.random.default_rng(0).random((10, 12)))
    assert out.shape == (40, 48, 3) and out.dtype == np.uint8


def test_overlay_blends_with_alpha_and_colours_by_limits():
    image, amap = _image(), _ramp_map()
    assert np.all(heatmap_overlay(image, amap, alpha=0.0) == 128)  # round(0.5 * 255)
    full = heatmap_overlay(image, amap, vmin=0.0, vmax=1.0, alpha=1.0)
    jet = matplotlib.colormaps["jet"]
    assert np.allclose(full[0, -1], np.round(np.array(jet(1.0)[:3]) * 255), atol=1)
    assert np.allclose(full[0, 0], np.round(np.array(jet(0.0)[:3]) * 255), atol=1)
    # values above vmax saturate: a map twice as large looks the same past its midpoint
    half = heatmap_overlay(image, amap * 2, vmin=0.0, vmax=1.0, alpha=1.0)
    assert np.array_equal(half[0, -1], half[0, -5])


def test_overlay_accepts_grayscale_image():
    out = heatmap_overlay(np.zeros((16, 16), np.float32), np.zeros((16, 16)), alpha=0.0)
    assert out.shape == (16, 16, 3) and out.max() == 0


def test_mask_contour_draws_green_outline_only():
    overlay = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = mask_contour(overlay, mask)
    green = np.all(out == (0, 255, 0), axis=-1)
    assert green[5, 5:15].all() and green[14, 5:15].all() and green[5:15, 5].all()
    assert not green[7:13, 7:13].any() and not green[:4].any()
    assert overlay.max() == 0  # the input is not modified


def test_common_limits_are_percentiles_of_all_maps():
    maps = [np.arange(100, dtype=np.float32).reshape(10, 10), np.full((5, 5), 50.0)]
    values = np.concatenate([maps[0].ravel(), maps[1].ravel()])
    assert common_limits(maps) == pytest.approx(tuple(np.percentile(values, [1, 99])))


def test_heatmap_grid_is_written_and_readable(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.random((32, 32, 3)).astype(np.float32) for _ in range(5)]
    maps = [rng.random((16, 16)) for _ in range(5)]
    masks = [None, None, np.eye(32, dtype=bool), None, np.ones((32, 32), bool)]
    path = save_heatmap_grid(
        tmp_path / "sub" / "grid.png", images, maps, masks, [0.1, 0.2, 0.9, 0.3, 0.8],
        [0, 0, 1, 0, 1], ncols=3,
    )  # fmt: skip
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] > 300 and png.size[1] > 300


def test_heatmap_grid_rejects_mismatched_inputs(tmp_path):
    with pytest.raises(ValueError, match="one map per image"):
        save_heatmap_grid(tmp_path / "g.png", [_image()], [])


def test_overlay_png_has_image_resolution(tmp_path):
    mask = np.zeros((24, 40), bool)
    mask[4:10, 4:10] = True
    path = save_overlay_png(tmp_path / "o.png", _image(24, 40), _ramp_map(6, 10), 0, 1, mask)
    with Image.open(path) as png:
        assert png.size == (40, 24) and png.mode == "RGB"


def test_roc_curve_written_with_auroc(tmp_path):
    auroc = save_roc_curve(tmp_path / "roc.png", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert auroc == pytest.approx(0.75)  # 3 of the 4 (normal, abnormal) pairs are ordered
    with Image.open(tmp_path / "roc.png") as png:
        assert png.format == "PNG"


def test_roc_curve_one_class_writes_a_figure_instead_of_crashing(tmp_path):
    assert save_roc_curve(tmp_path / "roc.png", [0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_several_roc_curves(tmp_path):
    aurocs = save_roc_curves(
        tmp_path / "rocs.png",
        {"perfect": ([0, 1], [0.0, 1.0]), "inverted": ([0, 1], [1.0, 0.0]), "one": ([1], [0.5])},
    )
    assert aurocs == {"perfect": 1.0, "inverted": 0.0, "one": None}
    assert (tmp_path / "rocs.png").exists()


def test_score_histogram_written(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(20), np.ones(20)]
    scores = np.r_[rng.normal(0, 1, 20), rng.normal(2, 1, 20)]
    path = save_score_histogram(tmp_path / "hist.png", labels, scores, threshold=1.0)
    with Image.open(path) as png:
        assert png.format == "PNG"
    save_score_histogram(tmp_path / "only_normal.png", labels[:20], scores[:20])
    assert (tmp_path / "only_normal.png").exists()
