"""The MediCLIP reference's synthesis recipe, checked statistically under fixed seeds."""

import numpy as np

from anomed.synthesis.medsyn import MedsynSynthesizer, hypershape, perlin_patch


def _image(size=112):
    rng = np.random.default_rng(0)
    image = np.zeros((size, size, 3), np.float32)
    body = rng.uniform(0.3, 0.7, (size // 2, size // 2, 1))
    image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = body
    return image  # a body on a black background


def _areas(task, n=16, seed=1):
    synth, rng, image = MedsynSynthesizer(tasks=(task,)), np.random.default_rng(seed), _image()
    draws = [synth(image, rng, [image[::-1].copy()]) for _ in range(n)]
    return np.array([m.mean() for _, m in draws]), draws


def test_one_task_per_image_with_a_quarter_left_normal():
    synth, rng, image = MedsynSynthesizer(), np.random.default_rng(2), _image()
    empty = [not synth(image, rng)[1].any() for _ in range(120)]
    assert 0.15 < np.mean(empty) < 0.35  # Identity: 1 of 4 tasks


def test_mask_areas_follow_the_references_patch_sizes():
    cut, _ = _areas("cutpaste")
    gauss, draws = _areas("gauss_intensity")
    source, _ = _areas("source")
    # the reference at 224 px (40 draws): CutPaste 0.058, Gauss 0.167, Source 0.085 of the image
    assert 0.025 < cut.mean() < 0.11 and 0.09 < gauss.mean() < 0.28 and 0.03 < source.mean() < 0.14
    outside = [m[_image()[..., 0] == 0].any() for _, m in draws]
    assert any(outside)  # no body restriction: anomalies may land in the background


def test_changes_stay_inside_the_mask_and_draws_repeat_with_the_seed():
    _, draws = _areas("gauss_intensity", n=4)
    for out, mask in draws:
        assert np.abs(out - _image())[~mask].max() == 0 and out.dtype == np.float32
    again = _areas("gauss_intensity", n=4)[1]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(draws, again, strict=True))


def test_patch_shapes():
    rng = np.random.default_rng(3)
    patch = perlin_patch((0.1, 0.6), (112, 112), rng)
    assert patch.mean() >= 0.2 and 11 <= max(patch.shape) < 68
    shape = hypershape((0.2, 0.6), (112, 112), rng)
    assert shape.mask.any() and max(shape.mask.shape) <= round(0.6 * 112) + 1
    centre = np.argwhere(shape.mask)[0].astype(float)
    assert shape.edge_distance(centre, np.array([[1.0], [0.0]]))[0] >= 0
