"""The synthetic brain-slice phantoms: determinism, anatomy, lesions and the files written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import anomed.data.phantoms.brain as phantom
from anomed.data.phantoms.brain import (
    LESION_KINDS,
    PhantomConfig,
    make_abnormal_slice,
    make_brain_slice,
    write_phantom_dataset,
)
from anomed.data.sample import ABNORMAL, NORMAL
from anomed.errors import AnomedError

SIZE = 96


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _tiny(**kw) -> PhantomConfig:
    return PhantomConfig(**{"n_train": 2, "n_test_normal": 2, "n_test_abnormal": 3,
                            "image_size": SIZE, **kw})  # fmt: skip


def test_slice_shape_range_and_determinism():
    image, brain = make_brain_slice(_rng(3), SIZE)
    assert image.shape == brain.shape == (SIZE, SIZE)
    assert image.dtype == np.float32 and brain.dtype == bool
    assert 0 <= image.min() and image.max() <= 1
    again, _ = make_brain_slice(_rng(3), SIZE)
    other, _ = make_brain_slice(_rng(4), SIZE)
    assert np.array_equal(image, again)
    assert np.abs(image - other).mean() > 0.02


@pytest.mark.parametrize("seed", range(4))
def test_slice_statistics_look_like_a_brain_slice(seed):
    image, brain = make_brain_slice(_rng(seed), 128)
    corners = np.concatenate([image[:8, :8].ravel(), image[-8:, -8:].ravel()])
    assert corners.mean() < 0.05  # black background (Rician noise floor only)
    assert 0.15 < brain.mean() < 0.6  # the brain fills a large central part
    assert brain[64, 64] and not brain[0, 0]
    assert 0.35 < image[brain].mean() < 0.7  # grey / white matter, some dark CSF
    grow = ndimage.binary_dilation
    ring = grow(brain, iterations=12) & ~grow(brain, iterations=3)
    assert np.percentile(image[ring], 95) > 0.7  # a bright skull ring surrounds the brain


@pytest.mark.parametrize("kind", LESION_KINDS)
def test_lesion_mask_is_inside_brain_and_sized(kind):
    for seed in range(3):
        image, brain, mask = make_abnormal_slice(_rng(seed), 128, kind)
        assert mask.dtype == bool and mask.any()
        assert not (mask & ~brain).any()  # never on the skull or outside the head
        # lesion radius is 10-32 px at 256, so at 128: area between ~pi*2^2 and pi*16^2
        assert 12 < mask.sum() < np.pi * 16**2 + 1


@pytest.mark.parametrize("kind", ["tumour", "cyst"])
def test_abnormal_differs_from_normal_only_at_the_lesion(kind):
    """Same seed, same anatomy: image-level detection must rely on the lesion."""
    normal, _ = make_brain_slice(_rng(7), SIZE)
    image, _, mask = make_abnormal_slice(_rng(7), SIZE, kind)
    near = ndimage.binary_dilation(mask, iterations=2)
    assert np.array_equal(image[~near], normal[~near])
    assert np.abs(image[mask] - normal[mask]).mean() > 0.1


def test_mass_displaces_tissue_but_not_the_skull():
    normal, brain = make_brain_slice(_rng(5), 128)
    image, _, mask = make_abnormal_slice(_rng(5), 128, "mass")
    around = ndimage.binary_dilation(mask, iterations=8) & ~ndimage.binary_dilation(mask)
    assert np.abs(image[around] - normal[around]).max() > 0.1  # pushed-aside tissue
    # skull and background untouched (up to float rounding: fields are evaluated differently)
    assert np.allclose(image[~brain], normal[~brain], atol=1e-4)


def test_lesion_intensities_match_their_kind():
    for kind, brighter in (("tumour", True), ("cyst", False), ("mass", True)):
        image, brain, mask = make_abnormal_slice(_rng(1), 128, kind)
        core = ndimage.binary_erosion(mask, iterations=3)
        tissue = np.median(image[brain & ~ndimage.binary_dilation(mask, iterations=6)])
        assert (np.median(image[core]) > tissue) == brighter, kind


def test_unknown_lesion_kind_is_rejected():
    with pytest.raises(AnomedError, match="unknown lesion kind 'bleed'"):
        make_abnormal_slice(_rng(0), SIZE, "bleed")


def test_write_dataset_layout_and_splits(tmp_path):
    root = tmp_path / "phantom"
    splits = write_phantom_dataset(root, _tiny())
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert names == [
        "README.txt",
        "test/abnormal/test_abnormal_0000_tumour.png",
        "test/abnormal/test_abnormal_0001_cyst.png",
        "test/abnormal/test_abnormal_0002_mass.png",
        "test/masks/test_abnormal_0000_tumour_mask.png",
        "test/masks/test_abnormal_0001_cyst_mask.png",
        "test/masks/test_abnormal_0002_mass_mask.png",
        "test/normal/test_normal_0000.png",
        "test/normal/test_normal_0001.png",
        "train/normal/train_normal_0000.png",
        "train/normal/train_normal_0001.png",
    ]
    assert splits.root == root and len(splits.train) == 2 and len(splits.test) == 5
    assert all(s.label == NORMAL and not s.masks for s in splits.train)
    assert [s.label for s in splits.test] == [NORMAL] * 2 + [ABNORMAL] * 3
    assert all(s.image.exists() and all(m.exists() for m in s.masks) for s in splits.test)
    assert "seed: 0" in (root / "README.txt").read_text()
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind


def test_written_files_are_8bit_grayscale_with_binary_masks(tmp_path):
    splits = write_phantom_dataset(tmp_path / "p", _tiny())
    image = Image.open(splits.test[0].image)
    assert image.mode == "L" and image.size == (SIZE, SIZE)
    for sample in splits.test[2:]:
        mask = np.asarray(Image.open(sample.masks[0]))
        assert set(np.unique(mask)) == {0, 255}
        brainish = np.asarray(Image.open(sample.image))[mask > 0]
        assert brainish.min() > 0  # the lesion lies inside the head, not on the background


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    write_phantom_dataset(tmp_path / "a", _tiny(seed=1))
    write_phantom_dataset(tmp_path / "b", _tiny(seed=1))
    write_phantom_dataset(tmp_path / "c", _tiny(seed=2))
    for path in (tmp_path / "a").rglob("*.png"):
        rel = path.relative_to(tmp_path / "a")
        assert path.read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert path.read_bytes() != (tmp_path / "c" / rel).read_bytes()


def test_existing_non_empty_root_needs_overwrite(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "keep.txt").write_text("user data")
    with pytest.raises(AnomedError, match="not empty.*overwrite=True"):
        write_phantom_dataset(root, _tiny())
    assert (root / "keep.txt").read_text() == "user data"
    write_phantom_dataset(root, _tiny(), overwrite=True)
    assert not (root / "keep.txt").exists() and (root / "README.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_empty_existing_root_is_used(tmp_path):
    (tmp_path / "p").mkdir()
    splits = write_phantom_dataset(tmp_path / "p", _tiny(n_test_abnormal=0))
    assert len(splits.test) == 2 and not splits.has_masks


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_save(path, image):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(phantom, "_save_png", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(tmp_path / "p", _tiny())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad",
    [{"image_size": 32}, {"n_train": -1}, {"seed": -1}, {"lesion_kinds": ("tumour", "bleed")}],
)
def test_invalid_config_is_rejected(tmp_path, bad):
    with pytest.raises(AnomedError, match="Fix:"):
        write_phantom_dataset(tmp_path / "p", _tiny(**bad))
    assert not (tmp_path / "p").exists()
