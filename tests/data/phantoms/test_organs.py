import itertools

import numpy as np
import pytest
from PIL import Image

from anomed.data.bmad import list_bmad_datasets, read_bmad
from anomed.data.layouts import load_dataset
from anomed.data.phantoms.organs import ORGANS, BmadPhantomConfig, write_bmad_phantoms
from anomed.errors import AnomedError

SMALL = dict(n_valid=(2, 3), n_test=(2, 2), size=64)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    parent = tmp_path_factory.mktemp("organs") / "bmad"
    organs = ("brain", "liver", "retina", "chest")
    return parent, write_bmad_phantoms(parent, BmadPhantomConfig(organs=organs, seed=3, **SMALL))


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writes_one_bmad_dataset_per_organ(written):
    parent, folders = written
    assert [f.name for f in folders] == ["Brain_AD", "Liver_AD", "Retina_RESC_AD", "Chest_AD"]
    assert list_bmad_datasets(parent) == sorted(folders)
    assert not list(parent.parent.glob(".*"))  # the temporary sibling is gone
    for folder in folders:
        splits = load_dataset(folder)
        assert [s.label for s in splits.train] == [0, 0, 1, 1, 1]
        assert [s.label for s in splits.test] == [0, 0, 1, 1]
        assert {s.clsname for s in splits.test} == {folder.name.removesuffix("_AD").lower()}


def test_masks_only_for_ungood_and_not_for_chest(written):
    _, folders = written
    for folder in folders[:3]:
        splits = read_bmad(folder)
        assert all(s.has_mask == bool(s.label) for s in splits.train + splits.test)
        assert not list(folder.glob("*/good/anomaly_mask"))
        for s in splits.train + splits.test:
            if s.masks:
                mask = np.asarray(Image.open(s.masks[0]))
                assert s.masks[0].name == s.image.name
                assert set(np.unique(mask)) == {0, 255}
    chest = folders[3]
    assert not list(chest.rglob("anomaly_mask"))
    assert not read_bmad(chest).has_masks


def test_images_are_8_bit_grayscale_png(written):
    _, folders = written
    for folder in folders:
        image = Image.open(next((folder / "test" / "Ungood" / "img").iterdir()))
        assert (image.format, image.mode, image.size) == ("PNG", "L", (64, 64))


def test_same_seed_same_bytes_other_seed_differs(written, tmp_path):
    _, folders = written
    again = write_bmad_phantoms(
        tmp_path / "a", BmadPhantomConfig(("retina", "liver"), seed=3, **SMALL)
    )
    assert _files(again[0]) == _files(folders[2])  # order of organs does not matter
    assert _files(again[1]) == _files(folders[1])
    other = write_bmad_phantoms(tmp_path / "b", BmadPhantomConfig(("liver",), seed=4, **SMALL))
    assert _files(other[0]).keys() == _files(folders[1]).keys()
    assert _files(other[0]) != _files(folders[1])


@pytest.mark.parametrize("organ", list(ORGANS))
def test_lesions_lie_inside_the_organ(organ):
    generate = ORGANS[organ].generate
    for i in range(12):
        image, mask, region = generate(np.random.default_rng(i), 64, True)
        assert image.dtype == np.float32 and image.shape == (64, 64)
        assert 0 <= image.min() and image.max() <= 1
        assert mask.any() and not (mask & ~region).any()
        _, normal_mask, _ = generate(np.random.default_rng(i), 64, False)
        assert not normal_mask.any()


def test_organs_look_different():
    """Mean normal images of any two organs differ by more than a tenth of the range."""
    means = {
        organ: np.mean([o.generate(np.random.default_rng(i), 64, False)[0] for i in range(4)], 0)
        for organ, o in ORGANS.items()
    }
    for a, b in itertools.combinations(means, 2):
        assert np.abs(means[a] - means[b]).mean() > 0.1, (a, b)


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    parent = tmp_path / "p"
    (parent / "keep.txt").parent.mkdir()
    (parent / "keep.txt").write_text("mine")
    with pytest.raises(AnomedError, match="not empty"):
        write_bmad_phantoms(parent, BmadPhantomConfig(("chest",), **SMALL))
    assert (parent / "keep.txt").read_text() == "mine"
    write_bmad_phantoms(parent, BmadPhantomConfig(("chest",), **SMALL), overwrite=True)
    assert sorted(p.name for p in parent.iterdir()) == ["Chest_AD", "README.txt"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(organs=("lung",)), "at most once"),
        (dict(organs=("liver", "liver")), "at most once"),
        (dict(size=16), "too small"),
        (dict(n_test=(2, 0)), r"counts for test: \(2, 0\)"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(AnomedError, match=message):
        write_bmad_phantoms(tmp_path / "p", BmadPhantomConfig(**{**SMALL, **kwargs}))
    assert not (tmp_path / "p").exists()
