from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomed.data.bmad import (
    bmad_class_name,
    list_bmad_datasets,
    read_bmad,
    read_mvfa_shot_file,
    write_mvfa_shot_file,
)
from anomed.data.layouts import detect_layout, load_dataset
from anomed.errors import AnomedError


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _tree(root: Path, masks: bool = True) -> Path:
    """valid: good a1, a2 / Ungood b1; test: good c1 / Ungood d1, d2 (masks by the same name)."""
    files = {"valid": (["a1", "a2"], ["b1"]), "test": (["c1"], ["d1", "d2"])}
    for split, (good, ungood) in files.items():
        for name in good:
            _png(root / split / "good" / "img" / f"{name}.png")
        for name in ungood:
            _png(root / split / "Ungood" / "img" / f"{name}.png")
            if masks:
                _png(root / split / "Ungood" / "anomaly_mask" / f"{name}.png", 255)
    return root


def test_pool_is_valid_labelled_and_test_is_test(tmp_path):
    root = _tree(tmp_path / "Retina_RESC_AD")
    splits = read_bmad(root)
    assert [(s.image.name, s.label) for s in splits.train] == [
        ("a1.png", 0),
        ("a2.png", 0),
        ("b1.png", 1),
    ]
    assert [(s.image.name, s.label) for s in splits.test] == [
        ("c1.png", 0),
        ("d1.png", 1),
        ("d2.png", 1),
    ]
    assert splits.train[2].masks == (root / "valid" / "Ungood" / "anomaly_mask" / "b1.png",)
    assert splits.test[2].masks == (root / "test" / "Ungood" / "anomaly_mask" / "d2.png",)
    assert not splits.test[0].masks
    assert {s.clsname for s in splits.train + splits.test} == {"retina_resc"}
    assert splits.has_masks and splits.name == "Retina_RESC_AD"


def test_auto_detection_and_loading(tmp_path):
    root = _tree(tmp_path / "Liver_AD")
    assert detect_layout(root) == "bmad"
    assert [s.image for s in load_dataset(root).test] == [s.image for s in read_bmad(root).test]
    folder = tmp_path / "plain"  # the folder layout is still told apart
    _png(folder / "train" / "normal" / "x.png")
    _png(folder / "test" / "normal" / "y.png")
    assert detect_layout(folder) == "folder"


@pytest.mark.parametrize(
    "name, clsname",
    [
        ("Brain_AD", "brain"),
        ("Liver_AD", "liver"),
        ("Retina_RESC_AD", "retina_resc"),
        ("Retina_OCT2017_AD", "retina_oct2017"),
        ("Chest_AD", "chest"),
        ("Histopathology_AD", "histopathology"),
    ],
)
def test_class_name_is_the_lower_cased_organ(name, clsname):
    assert bmad_class_name(Path(name)) == clsname


def test_image_level_dataset_has_no_masks(tmp_path):
    splits = load_dataset(_tree(tmp_path / "Chest_AD", masks=False))
    assert not splits.has_masks
    assert all(not s.has_mask for s in splits.train + splits.test)
    assert sum(s.label for s in splits.test) == 2


def test_mask_with_another_extension_is_matched_by_stem(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    mask = root / "test" / "Ungood" / "anomaly_mask" / "d1.png"
    mask.rename(mask.with_suffix(".bmp"))
    assert read_bmad(root).test[1].masks == (mask.with_suffix(".bmp"),)


def test_missing_mask_is_named(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    (root / "test" / "Ungood" / "anomaly_mask" / "d2.png").unlink()
    with pytest.raises(AnomedError, match=r"d2.png: no mask .*anomaly_mask.d2.png"):
        read_bmad(root)


def test_missing_mask_folder_in_one_split_is_an_error(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    for mask in (root / "valid" / "Ungood" / "anomaly_mask").iterdir():
        mask.unlink()
    (root / "valid" / "Ungood" / "anomaly_mask").rmdir()
    with pytest.raises(AnomedError, match=r"b1.png: no mask"):
        read_bmad(root)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_missing_split_is_named(tmp_path, split):
    root = _tree(tmp_path / "Brain_AD")
    (root / split).rename(tmp_path / "elsewhere")
    with pytest.raises(AnomedError, match=rf"Brain_AD: no {split}/ folder"):
        read_bmad(root)


def test_empty_and_missing_img_folders_are_named(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    for image in (root / "valid" / "good" / "img").iterdir():
        image.unlink()
    (root / "valid" / "good" / "img" / "notes.txt").write_text("not an image")
    with pytest.raises(AnomedError, match=r"valid.good.img: no images"):
        read_bmad(root)
    (root / "valid" / "good" / "img" / "notes.txt").unlink()
    (root / "valid" / "good" / "img").rmdir()
    with pytest.raises(AnomedError, match=r"valid.good.img: missing"):
        read_bmad(root)


def test_parent_of_datasets(tmp_path):
    brain, liver = _tree(tmp_path / "Brain_AD"), _tree(tmp_path / "Liver_AD", masks=False)
    (tmp_path / "notes").mkdir()
    assert list_bmad_datasets(tmp_path) == [brain, liver]
    assert list_bmad_datasets(brain) == [brain]
    with pytest.raises(AnomedError, match=r"holds the BMAD datasets Brain_AD, Liver_AD"):
        read_bmad(tmp_path)
    with pytest.raises(AnomedError, match="no BMAD datasets"):
        list_bmad_datasets(tmp_path / "notes")


# ------------------------------------------------------------------ MVFA shot files


def test_mvfa_shot_file_uses_bare_names_and_round_trips(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    normal = [
        root / "valid" / "good" / "img" / "a2.png",
        root / "valid" / "good" / "img" / "a1.png",
    ]
    abnormal = [root / "valid" / "Ungood" / "img" / "b1.png"]
    path = write_mvfa_shot_file(tmp_path / "2-shot.txt", normal, abnormal, root, repetition=2)
    assert path.read_text() == "a-2: b1.png\nn-2: a2.png a1.png\n"  # MVFA's own format
    assert read_mvfa_shot_file(path, root, repetition=2) == (normal, abnormal)


def test_reads_mvfa_reference_file(tmp_path):
    root = _tree(tmp_path / "Liver_AD")
    path = tmp_path / "1-shot.txt"
    path.write_text("a-0: b1.png\nn-0: a2.png\na-1: b1.png\nn-1: a1.png")  # no final newline
    normal, abnormal = read_mvfa_shot_file(path, root, repetition=1)
    assert normal == [root / "valid" / "good" / "img" / "a1.png"]
    assert abnormal == [root / "valid" / "Ungood" / "img" / "b1.png"]


def test_writing_a_repetition_keeps_the_others(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    good, bad = root / "valid" / "good" / "img", root / "valid" / "Ungood" / "img"
    path = tmp_path / "shots.txt"
    write_mvfa_shot_file(path, [good / "a1.png"], [bad / "b1.png"], root, repetition=1)
    write_mvfa_shot_file(path, [good / "a2.png"], [bad / "b1.png"], root, repetition=0)
    write_mvfa_shot_file(path, [good / "a2.png", good / "a1.png"], [], root, repetition=1)
    assert path.read_text().splitlines() == [
        "a-0: b1.png",
        "n-0: a2.png",
        "a-1: ",
        "n-1: a2.png a1.png",
    ]
    assert read_mvfa_shot_file(path, root, 0) == ([good / "a2.png"], [bad / "b1.png"])


def test_shot_outside_valid_is_written_relative_to_the_dataset(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    normal = [root / "test" / "good" / "img" / "c1.png"]
    path = write_mvfa_shot_file(tmp_path / "s.txt", normal, [], root)
    assert path.read_text() == "a-0: \nn-0: test/good/img/c1.png\n"
    assert read_mvfa_shot_file(path, root) == (normal, [])
    with pytest.raises(AnomedError, match="not inside the dataset folder"):
        write_mvfa_shot_file(tmp_path / "t.txt", [tmp_path / "x.png"], [], root)


def test_shot_file_errors(tmp_path):
    root = _tree(tmp_path / "Brain_AD")
    path = tmp_path / "shots.txt"
    path.write_text("a-0: b1.png\nn-0: a1.png gone.png\n")
    with pytest.raises(AnomedError, match=r"lists gone.png \(n-0\), which does not exist"):
        read_mvfa_shot_file(path, root)
    with pytest.raises(AnomedError, match=r"no `n-3:` line \(repetitions in the file: \[0\]\)"):
        read_mvfa_shot_file(path, root, repetition=3)
    path.write_text("a-0 b1.png\n")
    with pytest.raises(AnomedError, match=r"shots.txt:1: expected `a-<repetition>"):
        read_mvfa_shot_file(path, root)
    with pytest.raises(AnomedError, match="no such MVFA support file"):
        read_mvfa_shot_file(tmp_path / "absent.txt", root)
