"""Perlin noise and masks, lesion blobs, the body mask and the draw-until-visible loop."""

import numpy as np
import pytest

from anomed.synthesis.perlin import (
    MAX_TRIES,
    blob_mask,
    foreground_mask,
    most_visible,
    perlin_mask,
    perlin_noise,
)


def disc_on_black(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A grey disc with two near-black 'ventricles' inside it, on a black background."""
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size - 0.5
    disc = np.hypot(yy, xx) <= 0.4
    ventricles = ((yy / 0.12) ** 2 + ((np.abs(xx) - 0.08) / 0.04) ** 2) <= 1
    gray = np.where(disc, 0.5, 0.0) * ~ventricles + 0.01 * ventricles
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32), disc


def test_perlin_noise_shape_dtype_and_zero_on_the_lattice():
    noise = perlin_noise((64, 48), (4, 3), np.random.default_rng(0))
    assert noise.shape == (64, 48) and noise.dtype == np.float32
    # Lattice points fall on rows 0, 16, 32, 48 and columns 0, 16, 32: gradient noise is 0 there.
    np.testing.assert_allclose(noise[::16, ::16], 0.0, atol=1e-6)
    assert np.abs(noise).max() <= 1.0 + 1e-6
    assert noise.std() > 0.05


def test_perlin_noise_is_deterministic_under_the_rng():
    a = perlin_noise((32, 32), 2, np.random.default_rng(1))
    b = perlin_noise((32, 32), np.int64(2), np.random.default_rng(1))
    c = perlin_noise((32, 32), 2, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", range(5))
def test_perlin_mask_is_a_non_empty_bool_mask(seed):
    mask = perlin_mask((64, 64), np.random.default_rng(seed))
    assert mask.shape == (64, 64) and mask.dtype == bool and mask.any()


def test_perlin_mask_stays_in_the_foreground():
    _, disc = disc_on_black()
    for seed in range(5):
        mask = perlin_mask((64, 64), np.random.default_rng(seed), foreground=disc)
        assert mask.any() and not (mask & ~disc).any()


def test_perlin_mask_falls_back_to_a_tiny_foreground():
    tiny = np.zeros((64, 64), dtype=bool)
    tiny[5, 7] = True
    mask = perlin_mask((64, 64), np.random.default_rng(0), foreground=tiny, max_tries=3)
    np.testing.assert_array_equal(mask, tiny)


@pytest.mark.parametrize("seed", range(5))
def test_blob_mask_is_non_empty_and_inside_the_foreground(seed):
    _, disc = disc_on_black()
    mask = blob_mask((64, 64), np.random.default_rng(seed), (0.2, 0.4), foreground=disc)
    assert mask.dtype == bool and mask.any() and not (mask & ~disc).any()
    # Diameters are at most 40% of the side, and the outline bulges at most ~30% past that.
    ys, xs = np.nonzero(mask)
    assert np.ptp(ys) < 0.4 * 64 * 1.35 and np.ptp(xs) < 0.4 * 64 * 1.35


def test_foreground_mask_keeps_dark_ventricles_and_drops_the_background():
    image, disc = disc_on_black()
    np.testing.assert_array_equal(foreground_mask(image, 0.05), disc)


def test_most_visible_keeps_the_most_visible_draw_when_none_is_visible():
    image = np.zeros((8, 8, 3), dtype=np.float32)
    mask = np.ones((8, 8), dtype=bool)
    changes = iter([0.001, 0.005, 0.002] + [0.0] * MAX_TRIES)
    calls = []

    def draw():
        calls.append(1)
        return image + next(changes), mask

    new, _ = most_visible(draw, image)
    assert len(calls) == MAX_TRIES
    np.testing.assert_allclose(new, 0.005)


def test_most_visible_stops_at_the_first_visible_draw():
    image = np.zeros((8, 8, 3), dtype=np.float32)
    mask = np.ones((8, 8), dtype=bool)
    changes = iter([0.001, 0.3, 0.5])
    new, _ = most_visible(lambda: (image + next(changes), mask), image)
    np.testing.assert_allclose(new, 0.3)
