"""Dataset layouts on synthetic trees, their error messages, and the shared MediCLIP split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomed.data.layouts import LAYOUTS, load_dataset
from anomed.data.sample import ABNORMAL, NORMAL
from anomed.errors import AnomedError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mediclip"


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)
    return path


def _folder_tree(root: Path) -> Path:
    for name in ["b.png", "a.PNG", "c.jpg"]:
        _png(root / "train" / "normal" / name)
    (root / "train" / "normal" / "notes.txt").write_text("not an image")
    (root / "train" / "normal" / "._a.png").write_bytes(b"macOS metadata")
    _png(root / "test" / "normal" / "n1.png")
    _png(root / "test" / "normal" / "n0.png")
    for name in ["x.png", "y.png", "z.png"]:
        _png(root / "test" / "abnormal" / name, 255)
    _png(root / "test" / "masks" / "x_mask.png", 255)
    _png(root / "test" / "masks" / "x_mask_1.jpg", 255)
    _png(root / "test" / "masks" / "y.bmp", 255)
    _png(root / "test" / "masks" / "z_mask.tif", 255)
    return root


def test_folder_layout_reads_sorted_images_with_masks(tmp_path: Path) -> None:
    root = _folder_tree(tmp_path / "knee")
    data = load_dataset(root)
    assert data.name == "knee" and data.root == root
    assert [s.image.name for s in data.train] == ["a.PNG", "b.png", "c.jpg"]
    assert all(s.label == NORMAL and s.clsname == "knee" for s in data.train)
    assert [(s.image.name, s.label) for s in data.test] == [
        ("n0.png", NORMAL),
        ("n1.png", NORMAL),
        ("x.png", ABNORMAL),
        ("y.png", ABNORMAL),
        ("z.png", ABNORMAL),
    ]
    masks = {s.image.name: [m.name for m in s.masks] for s in data.test}
    assert masks == {
        "n0.png": [],
        "n1.png": [],
        "x.png": ["x_mask.png", "x_mask_1.jpg"],
        "y.png": ["y.bmp"],
        "z.png": ["z_mask.tif"],
    }
    assert data.has_masks


def test_folder_layout_reads_labelled_abnormal_training_images(tmp_path: Path) -> None:
    root = _folder_tree(tmp_path / "knee")
    _png(root / "train" / "abnormal" / "t.png", 255)
    _png(root / "train" / "masks" / "t_mask.png", 255)
    train = load_dataset(root, layout="folder").train
    assert [(s.image.name, s.label) for s in train][-1] == ("t.png", ABNORMAL)
    assert [m.name for m in train[-1].masks] == ["t_mask.png"]


def test_folder_layout_does_not_open_images(tmp_path: Path) -> None:
    root = _folder_tree(tmp_path / "d")
    (root / "test" / "normal" / "broken.png").write_text("corrupt")
    names = [s.image.name for s in load_dataset(root).test]
    assert "broken.png" in names  # reading is lazy; the reader reports it later


def test_folder_layout_warns_about_abnormal_images_without_mask(tmp_path: Path) -> None:
    root = _folder_tree(tmp_path / "d")
    _png(root / "test" / "abnormal" / "w.png", 255)
    with pytest.warns(UserWarning, match=r"no mask for 1 of 4 abnormal images \(e\.g\. w\.png\)"):
        data = load_dataset(root)
    assert [s.masks for s in data.test if s.image.name == "w.png"] == [()]


def test_two_masks_with_one_stem_is_an_error(tmp_path: Path) -> None:
    root = _folder_tree(tmp_path / "d")
    _png(root / "test" / "masks" / "x_mask.bmp")
    with pytest.raises(AnomedError, match=r"several masks for 'x_mask'.*keep one"):
        load_dataset(root)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(AnomedError, match=r"nowhere: dataset folder not found"):
        load_dataset(tmp_path / "nowhere")


def test_auto_lists_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(AnomedError, match=r"samples/test\.json.*d/test/"):
        load_dataset(tmp_path / "d")


def test_unknown_layout_name_lists_known_ones(tmp_path: Path) -> None:
    root = _folder_tree(tmp_path / "d")
    assert {"folder", "samples-json"} <= set(LAYOUTS.names())
    with pytest.raises(AnomedError, match="folder, samples-json"):
        load_dataset(root, layout="mvtec")


def test_empty_training_pool(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _png(root / "test" / "normal" / "a.png")
    (root / "train" / "normal").mkdir(parents=True)
    (root / "train" / "normal" / "readme.txt").write_text("x")
    with pytest.raises(AnomedError, match=r"train/normal: the training pool is empty"):
        load_dataset(root)


def test_empty_test_set_names_found_folders(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _png(root / "train" / "normal" / "a.png")
    _png(root / "test" / "good" / "a.png")
    with pytest.raises(AnomedError, match=r"no test images.*found folders: good/"):
        load_dataset(root)


def _json_tree(root: Path, clsnames: tuple[str, str] = ("brain", "brain")) -> Path:
    _png(root / "images" / "train" / "normal" / "t0.png")
    _png(root / "images" / "train" / "normal" / "t1.png")
    _png(root / "images" / "test" / "normal" / "n0.png")
    _png(root / "images" / "test" / "abnormal" / "a0.png", 255)
    _png(root / "images" / "test" / "abnormal" / "a1.png", 255)
    _png(root / "images" / "test" / "gt" / "a0_mask.png", 255)
    _png(root / "images" / "test" / "gt" / "a0_mask_1.png", 255)
    _png(root / "images" / "test" / "gt" / "a1_mask.jpg", 255)
    normal, abnormal = clsnames
    train = [{"filename": f"train/normal/t{i}.png", "label": 0, "clsname": normal} for i in (1, 0)]
    test = [
        {"filename": "test/normal/n0.png", "label": 0, "clsname": normal},
        {"filename": "test/abnormal/a0.png", "label": 1, "clsname": abnormal,
         "mask": "test/gt/a0_mask.png"},
        {"filename": "test/abnormal/a1.png", "label": 1, "clsname": abnormal,
         "mask": "test/gt/a1_mask.jpg"},
    ]  # fmt: skip
    (root / "samples").mkdir()
    (root / "samples" / "train.json").write_text("\n".join(json.dumps(r) for r in train))
    (root / "samples" / "test.json").write_text("\n\n".join(json.dumps(r) for r in test) + "\n")
    return root


def test_samples_json_layout(tmp_path: Path) -> None:
    root = _json_tree(tmp_path / "mri")
    data = load_dataset(root)
    assert data.name == "mri"
    assert [s.image.name for s in data.train] == ["t1.png", "t0.png"]  # file order is kept
    assert data.train[0].image == root / "images" / "train" / "normal" / "t1.png"
    assert [s.label for s in data.test] == [NORMAL, ABNORMAL, ABNORMAL]
    assert [[m.name for m in s.masks] for s in data.test] == [
        [],
        ["a0_mask.png", "a0_mask_1.png"],  # the `_1` sibling is merged in
        ["a1_mask.jpg"],
    ]
    assert {s.clsname for s in data.train + data.test} == {"brain"}


def test_samples_json_clsname_that_encodes_the_label_is_replaced(tmp_path: Path) -> None:
    data = load_dataset(_json_tree(tmp_path / "mri", ("normal", "abnormal")))
    assert {s.clsname for s in data.train + data.test} == {"mri"}


def test_samples_json_bad_line_names_file_and_line(tmp_path: Path) -> None:
    root = _json_tree(tmp_path / "mri")
    path = root / "samples" / "test.json"
    path.write_text('{"filename": "test/normal/n0.png", "label": 0}\n{"filename": \n')
    with pytest.raises(AnomedError, match=r"test\.json:2: not valid JSON"):
        load_dataset(root)


def test_samples_json_missing_file_is_named(tmp_path: Path) -> None:
    root = _json_tree(tmp_path / "mri")
    (root / "images" / "test" / "gt" / "a1_mask.jpg").unlink()
    with pytest.raises(AnomedError, match=r"test\.json:5: lists .*a1_mask\.jpg, which does not"):
        load_dataset(root)


def test_samples_json_empty_training_pool(tmp_path: Path) -> None:
    root = _json_tree(tmp_path / "mri")
    (root / "samples" / "train.json").write_text("\n")
    with pytest.raises(AnomedError, match=r"train\.json: the training pool is empty"):
        load_dataset(root, layout="samples-json")


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "n_normal", "n_abnormal", "n_masked"),
    [("brainmri", 65, 155, 0), ("busi", 101, 647, 647)],
)
def test_shared_mediclip_counts(name: str, n_normal: int, n_abnormal: int, n_masked: int) -> None:
    root = SHARED / name
    if not (root / "samples" / "test.json").is_file():
        pytest.skip(f"{root} not present")
    data = load_dataset(root)
    assert data.name == name and len(data.train) == 32
    assert all(s.label == NORMAL for s in data.train)
    assert sum(s.label == NORMAL for s in data.test) == n_normal
    assert sum(s.label == ABNORMAL for s in data.test) == n_abnormal
    assert sum(s.has_mask for s in data.test) == n_masked
    assert all(s.clsname == name for s in data.train + data.test)  # no label in the class name
    first_masks = [s.masks[0] for s in data.test if s.masks]
    extras = [m.with_name(f"{m.stem}_1{m.suffix}") for m in first_masks]
    extras = [p for p in extras if p.is_file()]  # BUSI-style `x_mask_1.jpg` next to `x_mask.jpg`
    merged = {m for s in data.test for m in s.masks[1:]}
    assert set(extras) <= merged
    if extras:
        assert any(len(s.masks) == 2 for s in data.test)
