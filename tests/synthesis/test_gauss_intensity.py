"""Gaussian intensity change: γ · smoothed binary noise added inside a Perlin blob."""

import numpy as np
import pytest
from scipy import ndimage

from anomed.synthesis.intensity import GaussIntensityChange


def textured(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random grey texture in [0.2, 0.8], (size, size, 3) float32."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 2.0)
    gray = 0.2 + 0.6 * (noise - noise.min()) / (noise.max() - noise.min())
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


def test_gamma_is_drawn_from_the_union_of_both_ranges():
    task = GaussIntensityChange()
    rng = np.random.default_rng(0)
    gammas = np.array([task.sample_gamma(rng) for _ in range(2000)])
    assert np.all((np.abs(gammas) >= 0.4) & (np.abs(gammas) < 0.6))
    assert 0.4 < (gammas > 0).mean() < 0.6


def test_texture_spans_zero_to_one():
    texture = GaussIntensityChange().texture((64, 64), np.random.default_rng(0))
    assert texture.min() == 0.0 and texture.max() == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_change_on_mid_grey_is_one_signed_and_bounded_by_gamma(seed):
    image = np.full((64, 64, 3), 0.5, dtype=np.float32)
    new, mask = GaussIntensityChange()(image, np.random.default_rng(seed))
    assert new.dtype == np.float32 and mask.dtype == bool and mask.any()
    np.testing.assert_array_equal(new[~mask], image[~mask])
    change = (new - image)[mask]
    # change = γ · texture · soft edge with texture, edge in [0, 1] and 0.4 <= |γ| < 0.6.
    assert np.all(change >= 0) or np.all(change <= 0)
    assert np.abs(change).max() < 0.6
    assert 0.05 < np.abs(change.mean()) < 0.45


@pytest.mark.parametrize("seed", range(4))
def test_change_is_confined_clipped_and_visible_on_texture(seed):
    image = textured(seed=seed)
    new, mask = GaussIntensityChange()(image, np.random.default_rng(seed))
    assert new.min() >= 0.0 and new.max() <= 1.0
    np.testing.assert_array_equal(new[~mask], image[~mask])
    assert np.abs(new - image)[mask].mean() > 0.02


def test_gauss_intensity_is_deterministic_under_the_rng():
    image, task = textured(), GaussIntensityChange()
    a, b, c = (task(image, np.random.default_rng(s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
