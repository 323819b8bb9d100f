import math

import numpy as np
import pytest

from anomed.data.augment import jitter, madclip_views, mvfa_views, rotate, translate, zoom

H, W = 36, 48  # not square, so a swapped (H, W) shows


def _blob(y: int = 12, x: int = 30, r: int = 1):
    """A bright (2r+1)^2 square on black, and the same square as the mask."""
    image = np.zeros((H, W, 3), np.float32)
    mask = np.zeros((H, W), bool)
    image[y - r : y + r + 1, x - r : x + r + 1] = 1.0
    mask[y - r : y + r + 1, x - r : x + r + 1] = True
    return image, mask


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(weights.shape)
    return np.array([(ys * weights).sum(), (xs * weights).sum()]) / weights.sum()


def _smooth():
    ys, xs = np.mgrid[0:H, 0:W]
    image = np.stack([xs / W, ys / H, (xs + ys) / (W + H)], -1).astype(np.float32)
    return image, (xs > ys)


@pytest.mark.parametrize(("fn", "count"), [(mvfa_views, 11), (madclip_views, 16)])
def test_counts_shapes_dtypes_and_range(fn, count):
    image, mask = _smooth()
    views = fn(image, mask)
    assert len(views) == count
    for v, m in views:
        assert v.shape == (H, W, 3) and v.dtype == np.float32
        assert m.shape == (H, W) and m.dtype == bool
        assert v.min() >= 0.0 and v.max() <= 1.0


def test_views_are_deterministic_and_leave_the_input_alone():
    image, mask = _smooth()
    before = image.copy(), mask.copy()
    a, b = madclip_views(image, mask), madclip_views(image, mask)
    assert all(
        np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )
    a[0][0][:] = 0.5  # the original view is a copy, not the caller's array
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])


def test_first_view_is_the_original_and_flips_are_exact():
    image, mask = _smooth()
    views = mvfa_views(image, mask)
    assert np.array_equal(views[0][0], image) and np.array_equal(views[0][1], mask)
    (hv, hm), (vv, vm) = views[9], views[10]
    assert np.array_equal(hv, image[:, ::-1]) and np.array_equal(hm, mask[:, ::-1])
    assert np.array_equal(vv, image[::-1]) and np.array_equal(vm, mask[::-1])


def test_zero_rotation_shift_and_unit_zoom_are_the_identity():
    image, mask = _smooth()
    for v, m in (rotate(image, mask, 0.0), translate(image, mask, 0.0, 0.0), zoom(image, mask, 1)):
        assert np.array_equal(v, image) and np.array_equal(m, mask)


@pytest.mark.parametrize("fn", [mvfa_views, madclip_views])
def test_mask_follows_the_image_in_every_geometric_view(fn):
    image, mask = _blob()
    for i, (v, m) in enumerate(fn(image, mask)[:15]):  # the photometric view is last
        assert m.any(), i
        dist = np.abs(_centroid(v[..., 0]) - _centroid(m.astype(float))).max()
        assert dist < 0.75, (i, dist)


def test_diagonal_shifts_move_by_ten_percent():
    image, mask = _blob(y=18, x=24, r=0)
    dy, dx = round(0.1 * H), round(0.1 * W)  # 4, 5
    expected = [(dx, dy), (-dx, dy), (-dx, -dy), (dx, -dy)]  # (x, y) of views 5..8
    for (v, m), (ex, ey) in zip(mvfa_views(image, mask)[5:9], expected, strict=True):
        assert v[18 + ey, 24 + ex, 0] == 1.0 and v[..., 0].sum() == 1.0
        assert m[18 + ey, 24 + ex] and m.sum() == 1


def test_shift_argument_sets_the_fraction():
    image, mask = _blob(y=18, x=24, r=0)
    v, m = mvfa_views(image, mask, shift=0.05)[5]
    assert m[18 + round(0.05 * H), 24 + round(0.05 * W)]


@pytest.mark.parametrize("degrees", [11.25, 22.5, -22.5])
def test_rotation_turns_about_the_centre(degrees):
    cy, cx = (H - 1) / 2, (W - 1) / 2
    image, mask = _blob(y=round(cy), x=round(cx + 12), r=1)
    before = _centroid(image[..., 0]) - (cy, cx)
    after = _centroid(rotate(image, mask, degrees)[0][..., 0]) - (cy, cx)
    assert np.hypot(*after) == pytest.approx(np.hypot(*before), abs=0.5)
    turn = math.degrees(math.atan2(-after[0], after[1]) - math.atan2(-before[0], before[1]))
    assert turn == pytest.approx(degrees, abs=2.0)  # counter-clockwise as displayed, y down


def test_zoom_scales_distances_from_the_centre():
    cy, cx = (H - 1) / 2, (W - 1) / 2
    image, mask = _blob(y=round(cy), x=round(cx + 10), r=1)
    before = _centroid(image[..., 0]) - (cy, cx)
    v, m = zoom(image, mask, 1.3)
    np.testing.assert_allclose(_centroid(v[..., 0]) - (cy, cx), 1.3 * before, atol=0.3)
    assert m.sum() > mask.sum()


def test_photometric_view_by_hand_and_mask_unchanged():
    image = np.full((2, 2, 3), 0.2, np.float32)
    image[0] = 0.6
    mask = np.array([[True, False], [False, False]])
    v, m = madclip_views(image, mask)[15]
    # brightness x1.2: 0.72 / 0.24, mean 0.48; contrast x0.8 about it: 0.672 / 0.288
    np.testing.assert_allclose(v[0], 0.672, atol=1e-6)
    np.testing.assert_allclose(v[1], 0.288, atol=1e-6)
    assert np.array_equal(m, mask)


def test_photometric_view_stays_in_range():
    v, _ = jitter(np.ones((4, 4, 3), np.float32), np.zeros((4, 4), bool), 1.2, 0.8)
    assert v.max() == 1.0


def test_mismatched_mask_is_refused():
    with pytest.raises(ValueError, match="share"):
        mvfa_views(np.zeros((8, 8, 3), np.float32), np.zeros((8, 9), bool))
