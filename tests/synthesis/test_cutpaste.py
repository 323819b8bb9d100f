"""CutPaste: a piece of a donor pasted or Poisson-blended into a Perlin blob."""

import numpy as np
import pytest
from scipy import ndimage

from anomed.errors import AnomedError
from anomed.synthesis.cutpaste import CutPaste, poisson_blend


def textured(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random grey texture in [0.2, 0.8], (size, size, 3) float32."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 2.0)
    gray = 0.2 + 0.6 * (noise - noise.min()) / (noise.max() - noise.min())
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


@pytest.mark.parametrize("blend", ["paste", "poisson"])
@pytest.mark.parametrize("seed", range(4))
def test_cutpaste_changes_only_inside_a_non_empty_mask(blend, seed):
    image, donors = textured(), [textured(seed=1), textured(seed=2)]
    new, mask = CutPaste(blend=blend)(image, np.random.default_rng(seed), donors)
    assert new.shape == image.shape and new.dtype == np.float32
    assert mask.shape == (64, 64) and mask.dtype == bool and mask.any()
    assert new.min() >= 0.0 and new.max() <= 1.0
    # Both blends composite with the mask, so pixels outside it are exactly the input.
    np.testing.assert_array_equal(new[~mask], image[~mask])
    assert np.abs(new - image)[mask].mean() > 0.02


@pytest.mark.parametrize("blend", ["paste", "poisson"])
def test_cutpaste_is_deterministic_under_the_rng(blend):
    image, donors = textured(), [textured(seed=1)]
    task = CutPaste(blend=blend)
    a = task(image, np.random.default_rng(3), donors)
    b = task(image, np.random.default_rng(3), donors)
    c = task(image, np.random.default_rng(4), donors)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_paste_copies_donor_pixels_into_the_mask():
    image, donor = textured(), np.ones((64, 64, 3), dtype=np.float32)
    new, mask = CutPaste(blend="paste")(image, np.random.default_rng(0), [donor])
    np.testing.assert_array_equal(new[mask], 1.0)


def test_cutpaste_without_donors_uses_the_image_itself():
    image = textured()
    new, mask = CutPaste(blend="paste")(image, np.random.default_rng(0))
    assert mask.any() and np.abs(new - image)[mask].mean() > 0.02


def test_poisson_blend_keeps_the_mask_off_the_border_and_the_change_inside_it():
    image, content = textured(), textured(seed=5)
    mask = np.zeros((64, 64), dtype=bool)
    mask[:20, 10:40] = True  # touches the top border, which seamlessClone cannot use
    new, blended = poisson_blend(image, content, mask)
    assert not blended[0].any() and blended[1:20, 11:39].all()
    np.testing.assert_array_equal(new[~blended], image[~blended])
    # Poisson blending reproduces the content's gradients inside the mask.
    inner = (slice(5, 15), slice(20, 30))
    np.testing.assert_allclose(
        np.diff(new[inner], axis=1), np.diff(content[inner], axis=1), atol=0.02
    )


def test_unknown_blend_is_a_user_error():
    with pytest.raises(AnomedError, match="unknown blend 'alpha'.*Fix"):
        CutPaste(blend="alpha")
