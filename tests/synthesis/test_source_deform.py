"""Source deformation: content inside a rotated shape swells outward from its centre."""

import numpy as np
import pytest
from scipy import ndimage

from anomed.errors import AnomedError
from anomed.synthesis.source import Source, source_warp


def coordinates(size: int = 64) -> np.ndarray:
    """Channel 0 = x / (size - 1), channel 1 = y / (size - 1): bilinear sampling is exact on it,
    so the output tells where each pixel was sampled from."""
    ramp = np.arange(size, dtype=np.float32) / (size - 1)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    return np.stack([xx, yy, np.full_like(xx, 0.5)], axis=-1)


def sampled_from(new: np.ndarray, y: int, x: int) -> tuple[float, float]:
    size = new.shape[0]
    return float(new[y, x, 1] * (size - 1)), float(new[y, x, 0] * (size - 1))


def textured(size: int = 64, seed: int = 0) -> np.ndarray:
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 2.0)
    gray = 0.2 + 0.6 * (noise - noise.min()) / (noise.max() - noise.min())
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


def test_circle_with_alpha_two_samples_at_distance_d_squared_over_r():
    # Circle of radius 20 at (32, 32), α = 2: a pixel at distance d samples at distance d²/20.
    new, mask = source_warp(coordinates(), (32.0, 32.0), (20.0, 20.0), 0.0, 2.0, "ellipse")
    assert sampled_from(new, 32, 32) == pytest.approx((32.0, 32.0), abs=1e-3)
    assert sampled_from(new, 32, 42) == pytest.approx((32.0, 37.0), abs=1e-3)  # d 10 -> 5
    assert sampled_from(new, 16, 32) == pytest.approx((32 - 12.8, 32.0), abs=1e-3)  # 16 -> 12.8
    assert sampled_from(new, 44, 41) == pytest.approx((32 + 12 * 0.75, 32 + 9 * 0.75), abs=1e-3)
    assert mask[32, 52] and not mask[32, 53]  # the boundary pixel is inside and stays put
    np.testing.assert_array_equal(new[~mask], coordinates()[~mask])


def test_rectangle_radius_depends_on_the_direction():
    # Axis-aligned rectangle, half sizes 10 (y) and 20 (x), α = 3: factor (‖l−c‖/r)².
    new, mask = source_warp(coordinates(), (32.0, 32.0), (10.0, 20.0), 0.0, 3.0, "rectangle")
    assert sampled_from(new, 32, 42) == pytest.approx((32.0, 32 + 10 * 0.25), abs=1e-3)
    assert sampled_from(new, 37, 32) == pytest.approx((32 + 5 * 0.25, 32.0), abs=1e-3)
    assert sampled_from(new, 37, 52) == pytest.approx((37.0, 52.0), abs=1e-3)  # on the edge
    assert mask[42, 52] and not mask[43, 32] and not mask[32, 53]


def test_rotation_turns_the_shape():
    _, upright = source_warp(coordinates(), (32.0, 32.0), (5.0, 20.0), 0.0, 2.0)
    _, turned = source_warp(coordinates(), (32.0, 32.0), (5.0, 20.0), np.pi / 2, 2.0)
    assert upright[32, 50] and not upright[50, 32]
    assert turned[50, 32] and not turned[32, 50]


def test_rings_are_pushed_outward():
    # Rings cos(2π ρ / 8) around (32, 32): the first bright ring is at ρ = 8. After the warp
    # (radius 24, α = 2) it sits where ρ² / 24 = 8, at ρ = √192 ≈ 13.9.
    yy, xx = np.mgrid[:64, :64] - 32.0
    rings = 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(yy, xx) / 8)
    image = np.repeat(rings[..., None], 3, axis=-1).astype(np.float32)
    new, _ = source_warp(image, (32.0, 32.0), (24.0, 24.0), 0.0, 2.0)
    profile = new[32, 32:, 0]
    assert new[32, 32, 0] == pytest.approx(1.0)  # the centre stays
    assert np.argmax(profile[4:20]) + 4 == 14
    assert np.argmax(rings[32, 32 + 4 : 32 + 20]) + 4 == 8


@pytest.mark.parametrize("shape", ["ellipse", "rectangle", "random"])
@pytest.mark.parametrize("seed", range(3))
def test_source_changes_only_inside_a_non_empty_mask(shape, seed):
    image = textured(seed=seed)
    new, mask = Source(shape=shape)(image, np.random.default_rng(seed))
    assert new.shape == image.shape and new.dtype == np.float32
    assert mask.dtype == bool and mask.any()
    assert new.min() >= 0.0 and new.max() <= 1.0
    np.testing.assert_array_equal(new[~mask], image[~mask])
    assert np.abs(new - image)[mask].mean() > 0.02


def test_source_is_deterministic_under_the_rng():
    image, task = textured(), Source()
    a, b, c = (task(image, np.random.default_rng(s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_source_on_a_flat_image_still_returns_a_mask():
    image = np.full((32, 32, 3), 0.3, dtype=np.float32)
    new, mask = Source()(image, np.random.default_rng(0))
    assert mask.any()
    np.testing.assert_allclose(new, image, atol=1e-6)


def test_unknown_shape_is_a_user_error():
    with pytest.raises(AnomedError, match="unknown shape 'star'.*Fix"):
        Source(shape="star")
