import numpy as np

from anomed.data.augment import madclip_views, mvfa_views


def _dot(size=32, y=10, x=20):
    image = np.zeros((size, size, 3), np.float32)
    mask = np.zeros((size, size), bool)
    image[y, x] = 1.0
    mask[y, x] = True
    return image, mask


def test_counts_shapes_and_range():
    image, mask = _dot()
    assert len(mvfa_views(image, mask)) == 11
    views = madclip_views(image, mask)
    assert len(views) == 16
    for v, m in views:
        assert v.shape == image.shape and v.dtype == np.float32 and m.shape == mask.shape
        assert 0.0 <= v.min() and v.max() <= 1.0


def test_first_view_is_the_original_and_flips_are_exact():
    image, mask = _dot()
    views = mvfa_views(image, mask)
    assert np.array_equal(views[0][0], image)
    assert np.array_equal(views[9][0], image[:, ::-1]) and np.array_equal(
        views[9][1], mask[:, ::-1]
    )
    assert np.array_equal(views[10][0], image[::-1]) and np.array_equal(views[10][1], mask[::-1])


def test_mask_follows_the_image():
    image = np.zeros((32, 32, 3), np.float32)
    mask = np.zeros((32, 32), bool)
    image[12:18, 14:20] = 1.0
    mask[12:18, 14:20] = True
    for v, m in mvfa_views(image, mask)[:9] + madclip_views(image, mask)[11:15]:
        bright = v[..., 0] > 0.5
        assert (bright & m).sum() >= 0.7 * max(bright.sum(), m.sum())


def test_shift_moves_by_ten_percent():
    image, mask = _dot(size=40, y=10, x=10)
    v, m = mvfa_views(image, mask)[5]  # first shift: (+10 %, +10 %)
    assert m[14, 14] and v[14, 14, 0] == 1.0


def test_photometric_view_keeps_the_mask():
    image, mask = _dot()
    v, m = madclip_views(image, mask)[15]
    assert np.array_equal(m, mask) and not np.array_equal(v, image)
