import numpy as np
import pytest
from PIL import Image

from anomed.data.bmad import list_bmad_datasets, read_mvfa_shot_file, write_mvfa_shot_file
from anomed.data.layouts import detect_layout, load_dataset
from anomed.data.phantom_organs import ORGANS, write_bmad_phantoms
from anomed.errors import AnomedError


def _png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def _tree(root, masks=True):
    for split in ("valid", "test"):
        _png(root / split / "good" / "img" / "a.png")
        _png(root / split / "Ungood" / "img" / "b.png")
        if masks:
            _png(root / split / "Ungood" / "anomaly_mask" / "b.png", 255)
    return root


def test_reads_pool_from_valid_and_masks_by_name(tmp_path):
    root = _tree(tmp_path / "Retina_RESC_AD")
    assert detect_layout(root) == "bmad"
    splits = load_dataset(root)
    assert [(s.image.name, s.label) for s in splits.train] == [("a.png", 0), ("b.png", 1)]
    assert splits.test[1].masks == (root / "test" / "Ungood" / "anomaly_mask" / "b.png",)
    assert {s.clsname for s in splits.test} == {"retina_resc"}


def test_image_level_dataset_has_no_masks(tmp_path):
    splits = load_dataset(_tree(tmp_path / "Chest_AD", masks=False))
    assert not splits.has_masks


def test_missing_mask_is_named(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    (root / "test" / "Ungood" / "anomaly_mask" / "b.png").unlink()
    with pytest.raises(AnomedError, match=r"b.png: no mask"):
        load_dataset(root)


def test_mvfa_shot_file_round_trip(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    normal = [root / "valid" / "good" / "img" / "a.png"]
    abnormal = [root / "valid" / "Ungood" / "img" / "b.png"]
    path = write_mvfa_shot_file(tmp_path / "shots.txt", normal, abnormal, root, repetition=2)
    assert path.read_text().splitlines()[0] == "a-2: valid/Ungood/img/b.png"
    assert read_mvfa_shot_file(path, root, repetition=2) == (normal, abnormal)
    (root / "valid" / "good" / "img" / "a.png").unlink()
    with pytest.raises(AnomedError, match="a.png, which does not exist"):
        read_mvfa_shot_file(path, root, repetition=2)


def test_organ_phantoms(tmp_path):
    folders = write_bmad_phantoms(
        tmp_path / "p",
        organs=("liver", "retina", "chest"),
        n_valid=(2, 2),
        n_test=(3, 3),
        size=64,
        seed=1,
    )
    assert [f.name for f in folders] == ["Liver_AD", "Retina_RESC_AD", "Chest_AD"]
    assert list_bmad_datasets(tmp_path / "p") == sorted(folders)
    for folder in folders:
        splits = load_dataset(folder)
        assert len(splits.train) == 4 and len(splits.test) == 6
        assert splits.has_masks == ORGANS[folder.name.split("_")[0].lower()][2]
        for s in splits.test:
            if s.masks:
                assert np.asarray(Image.open(s.masks[0])).max() == 255
    again = write_bmad_phantoms(
        tmp_path / "q", organs=("liver",), n_valid=(2, 2), n_test=(3, 3), size=64, seed=1
    )
    a = np.asarray(Image.open(folders[0] / "test" / "Ungood" / "img" / "test_ungood_0001.png"))
    b = np.asarray(Image.open(again[0] / "test" / "Ungood" / "img" / "test_ungood_0001.png"))
    assert np.array_equal(a, b)
    with pytest.raises(AnomedError, match="not empty"):
        write_bmad_phantoms(tmp_path / "p", organs=("liver",))
