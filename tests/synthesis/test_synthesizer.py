"""AnomalySynthesizer and the SYNTHESIS registry."""

import numpy as np
import pytest
from scipy import ndimage

from anomed.errors import AnomedError
from anomed.synthesis import (
    SYNTHESIS,
    AnomalySynthesizer,
    CutPaste,
    GaussIntensityChange,
    Source,
)


def brain_like(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured disc with near-black 'ventricles' inside, on black: (image, disc mask)."""
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size - 0.5
    disc = np.hypot(yy, xx) <= 0.4
    ventricles = ((yy / 0.12) ** 2 + ((np.abs(xx) - 0.08) / 0.04) ** 2) <= 1
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((size, size)), 1.5)
    tissue = 0.3 + 0.5 * (noise - noise.min()) / (noise.max() - noise.min())
    gray = np.where(ventricles, 0.01, np.where(disc, tissue, 0.0))
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32), disc


def test_registry_names_the_tasks():
    assert SYNTHESIS.names() == ["cutpaste", "gauss_intensity", "sas", "source"]
    assert SYNTHESIS.get("cutpaste") is CutPaste
    assert SYNTHESIS.get("gauss_intensity") is GaussIntensityChange
    assert SYNTHESIS.get("source") is Source
    with pytest.raises(AnomedError, match="known: cutpaste, gauss_intensity, sas, source"):
        SYNTHESIS.get("sink")


@pytest.mark.parametrize("task", ["cutpaste", "gauss_intensity", "source"])
@pytest.mark.parametrize("seed", range(4))
def test_anomalies_stay_in_the_body_and_inside_the_mask(task, seed):
    image, disc = brain_like(seed=seed)
    donors = [brain_like(seed=10 + seed)[0]]
    new, mask = AnomalySynthesizer(tasks=(task,))(image, np.random.default_rng(seed), donors)
    assert new.shape == image.shape and new.dtype == np.float32
    assert mask.shape == disc.shape and mask.dtype == bool and mask.any()
    assert new.min() >= 0.0 and new.max() <= 1.0
    assert not (mask & ~disc).any()  # no lesion in the black background
    np.testing.assert_array_equal(new[~mask], image[~mask])
    assert np.abs(new - image)[mask].mean() > 0.02


def test_same_seed_same_output_different_seed_different_output():
    image, _ = brain_like()
    synth = AnomalySynthesizer()
    a, b, c = (synth(image, np.random.default_rng(s)) for s in (5, 5, 6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_identity_returns_the_image_and_an_empty_mask():
    image, _ = brain_like()
    new, mask = AnomalySynthesizer(identity_prob=1.0)(image, np.random.default_rng(0))
    np.testing.assert_array_equal(new, image)
    assert mask.shape == (64, 64) and not mask.any()


def test_two_anomalies_unite_their_masks():
    image, _ = brain_like()
    gauss = GaussIntensityChange()
    one, _ = AnomalySynthesizer(tasks=(gauss,), n_anomalies=(1, 1))(image, np.random.default_rng(0))
    new, mask = AnomalySynthesizer(tasks=(gauss,), n_anomalies=(2, 2))(
        image, np.random.default_rng(0)
    )
    # Same draws up to the second anomaly, whose change lands inside the united mask.
    assert not np.array_equal(new, one)
    np.testing.assert_array_equal(new[~mask], image[~mask])


def test_task_instances_are_accepted():
    image, _ = brain_like()
    synth = AnomalySynthesizer(tasks=(CutPaste(blend="paste"),))
    new, mask = synth(image, np.random.default_rng(0))
    assert mask.any() and not np.array_equal(new, image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": ()}, "no tasks"),
        ({"tasks": ("sink",)}, "unknown synthesis task 'sink'"),
        ({"n_anomalies": (2, 1)}, "n_anomalies=\\(2, 1\\)"),
        ({"n_anomalies": (0, 1)}, "n_anomalies"),
        ({"identity_prob": 1.5}, "identity_prob=1.5"),
    ],
)
def test_bad_configs_are_user_errors(kwargs, message):
    with pytest.raises(AnomedError, match=message):
        AnomalySynthesizer(**kwargs)


def test_image_must_be_rgb():
    with pytest.raises(ValueError, match="\\(H, W, 3\\)"):
        AnomalySynthesizer()(np.zeros((8, 8), dtype=np.float32), np.random.default_rng(0))
