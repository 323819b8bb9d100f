"""The chest-film phantoms: anatomy, lesions and masks, and the two layouts written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from anomed.data.cxr import read_cxr_json
from anomed.data.layouts import load_dataset
from anomed.data.phantoms.chest import (
    LESION_KINDS,
    ChestPhantomConfig,
    lung_zones,
    make_abnormal_chest_film,
    make_chest_film,
    write_chest_phantoms,
)
from anomed.data.sample import ABNORMAL, NORMAL
from anomed.errors import AnomedError

SIZE = 96


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _tiny(root, overwrite=False, **kw):
    args = {"n_train": 2, "n_test_normal": 2, "n_test_abnormal": 3, "size": SIZE, **kw}
    return write_chest_phantoms(root, ChestPhantomConfig(**args), overwrite=overwrite)


def test_film_shape_range_and_determinism():
    image, lungs = make_chest_film(_rng(3), SIZE)
    assert image.shape == lungs.shape == (SIZE, SIZE)
    assert image.dtype == np.float32 and lungs.dtype == bool
    assert 0 <= image.min() and image.max() <= 1
    assert np.array_equal(image, make_chest_film(_rng(3), SIZE)[0])
    assert np.abs(image - make_chest_film(_rng(4), SIZE)[0]).mean() > 0.01


@pytest.mark.parametrize("seed", range(4))
def test_film_looks_like_a_chest_film(seed):
    image, lungs = make_chest_film(_rng(seed), 128)
    left, right = lungs[:, :64], lungs[:, 64:]
    assert 0.15 < lungs.mean() < 0.45  # two lung fields fill a large part
    assert left.sum() > 0.05 * 128 * 64 and right.sum() > 0.05 * 128 * 64
    assert not lungs[:, 62:66].any()  # the mediastinum separates them
    assert image[lungs].mean() < image[~lungs & (image > 0.2)].mean() - 0.2  # dark lungs
    assert image[:8, :8].mean() < 0.15  # air above the shoulders
    band = lungs[72:84]  # rows at the heart's level; medial lung edges on each side:
    left_edge = np.mean([np.nonzero(r[:64])[0].max() for r in band if r[:64].any()])
    right_edge = np.mean([np.nonzero(r[64:])[0].min() + 64 for r in band if r[64:].any()])
    assert right_edge - 64 > 64 - left_edge + 5  # the heart bulges to the image's right


def _autocorrelation(seed: int) -> tuple[float, float]:
    """Detrended brightness along a column through the image-left lung: the lowest
    autocorrelation at lags 5-7 px and the highest at 10-14 px (rib spacing ~12 px at 224)."""
    image, lungs = make_chest_film(_rng(seed), 224)
    column = image[:, 60][lungs[:, 60]].astype(float)
    column -= ndimage.uniform_filter1d(column, 25)
    column -= column.mean()

    def r(k: int) -> float:
        return float(np.dot(column[:-k], column[k:]) / np.dot(column, column))

    return min(r(k) for k in range(5, 8)), max(r(k) for k in range(10, 15))


def test_ribs_cross_the_lungs_as_regular_bright_bands():
    half, full = zip(*(_autocorrelation(seed) for seed in range(4)), strict=True)
    assert max(half) < -0.4 and np.mean(full) > 0.3  # noise alone gives about -0.2 and 0.1


def test_zones_split_each_lung_in_three():
    zones = lung_zones(_rng(0), SIZE)
    _, lungs = make_chest_film(_rng(0), SIZE)
    assert np.array_equal(zones > 0, lungs)
    assert set(np.unique(zones)) == {0, 1, 2, 3, 4, 5, 6}
    rows = {z: np.nonzero(zones == z)[0].mean() for z in range(1, 7)}
    assert rows[1] < rows[2] < rows[3] and rows[4] < rows[5] < rows[6]


@pytest.mark.parametrize("kind", LESION_KINDS)
def test_lesion_mask_is_exact_and_inside_one_lung(kind):
    for seed in range(4):
        normal, lungs = make_chest_film(_rng(seed), SIZE)
        image, lungs2, mask = make_abnormal_chest_film(_rng(seed), SIZE, kind)
        assert np.array_equal(lungs, lungs2) and mask.dtype == bool and mask.any()
        assert not (mask & ~lungs).any()
        assert not (mask[:, : SIZE // 2].any() and mask[:, SIZE // 2 :].any())  # one side
        changed = np.abs(image - normal) > 1e-6
        np.testing.assert_array_equal(changed, mask)  # exactly the mask's pixels change
        assert (image - normal)[mask].mean() > 0.05  # an opacity: brighter


def test_nodules_are_small_and_the_other_lesions_larger():
    areas = {k: [make_abnormal_chest_film(_rng(s), 128, k)[2].sum() for s in range(6)]
             for k in LESION_KINDS}  # fmt: skip
    assert max(areas["nodule"]) < np.pi * (0.04 * 128 * 1.1) ** 2  # radius <= 4 % of the side
    assert np.mean(areas["consolidation"]) > 3 * np.mean(areas["nodule"])
    assert np.mean(areas["effusion"]) > 3 * np.mean(areas["nodule"])
    with pytest.raises(AnomedError, match="unknown chest lesion kind"):
        make_abnormal_chest_film(_rng(0), SIZE, "tumour")


def test_folder_layout_is_read_back_by_the_generic_reader(tmp_path):
    root = tmp_path / "chest"
    splits = _tiny(root)
    assert sorted(p.name for p in root.iterdir()) == ["README.txt", "test", "train"]
    assert len(list((root / "test" / "masks").iterdir())) == 3
    read = load_dataset(root)
    assert [s.image for s in read.train] == [s.image for s in splits.train]
    assert sorted(s.image for s in read.test) == sorted(s.image for s in splits.test)
    abnormal = [s for s in splits.test if s.label == ABNORMAL]
    assert [s.image.stem.split("_")[-1] for s in abnormal] == list(LESION_KINDS)
    assert all(s.masks[0].name == f"{s.image.stem}_mask.png" for s in abnormal)
    assert {s.clsname for s in splits.train + splits.test} == {"chest"}
    with Image.open(abnormal[0].masks[0]) as mask, Image.open(abnormal[0].image) as image:
        assert mask.size == image.size == (SIZE, SIZE) and image.mode == "L"
        assert set(np.unique(np.asarray(mask))) == {0, 255}


def test_data_json_layout_matches_the_cxr_reader(tmp_path):
    root = tmp_path / "chest"
    splits = _tiny(root, layout="data-json")
    spec = json.loads((root / "data.json").read_text())
    assert spec == {
        "train": {"0": ["train_normal_0000.png", "train_normal_0001.png"]},
        "test": {
            "0": ["test_normal_0000.png", "test_normal_0001.png"],
            "1": [f"test_abnormal_{i:04d}_{k}.png" for i, k in enumerate(LESION_KINDS)],
        },
    }
    assert sorted(p.name for p in root.iterdir()) == ["README.txt", "data.json", "images", "masks"]
    read = read_cxr_json(root)
    assert read.train == splits.train and read.test == splits.test
    assert read.test[-1].masks == (root / "masks" / "test_abnormal_0002_effusion.png",)
    assert [s.label for s in read.test] == [NORMAL, NORMAL, ABNORMAL, ABNORMAL, ABNORMAL]


def test_same_seed_same_bytes_and_a_different_seed_differs(tmp_path):
    _tiny(tmp_path / "a", seed=5)
    _tiny(tmp_path / "b", seed=5)
    _tiny(tmp_path / "c", seed=6)
    name = "test/abnormal/test_abnormal_0000_consolidation.png"
    a, b, c = ((tmp_path / d / name).read_bytes() for d in "abc")
    assert a == b and a != c


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    root = tmp_path / "chest"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(AnomedError, match="not empty"):
        _tiny(root)
    assert (root / "keep.txt").exists()
    _tiny(root, overwrite=True, layout="data-json")
    assert not (root / "keep.txt").exists() and (root / "data.json").is_file()
    assert not list(tmp_path.glob(".chest*"))  # no temporary folder left behind


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"layout": "csv"}, "layout 'csv' is unknown"),
        ({"size": 32}, "too small"),
        ({"n_train": 0}, "at least one training film"),
        ({"lesion_kinds": ("tumour",)}, "lesion_kinds"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kw, message):
    with pytest.raises(AnomedError, match=message):
        _tiny(tmp_path / "x", **kw)
    assert not (tmp_path / "x").exists()
