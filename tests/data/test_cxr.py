"""The PPAD / DDAD `data.json` layout reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomed.data.cxr import is_cxr_json, read_cxr_json
from anomed.data.sample import ABNORMAL, NORMAL
from anomed.errors import AnomedError


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)


def _dataset(root: Path, spec: dict, folder: str = "images", masks: tuple[str, ...] = ()) -> Path:
    """Write data.json and an empty PNG for every listed name (in `folder`), plus masks."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.json").write_text(json.dumps(spec))
    for by_label in spec.values():
        for key, names in by_label.items():
            for name in names if key in ("0", "1") else ():
                _png(root / folder / name)
    for name in masks:
        _png(root / "masks" / name)
    return root


SPEC = {"train": {"0": ["n1.png", "n2.png"]}, "test": {"0": ["n3.png"], "1": ["a1.png", "a2.png"]}}


def test_reads_splits_labels_and_masks(tmp_path):
    root = _dataset(tmp_path / "zhanglab", SPEC, masks=("a1.png",))
    assert is_cxr_json(root) and not is_cxr_json(tmp_path)
    splits = read_cxr_json(root)
    assert splits.name == "zhanglab" and splits.root == root
    assert [(s.image.name, s.label) for s in splits.train] == [("n1.png", 0), ("n2.png", 0)]
    assert [(s.image.name, s.label) for s in splits.test] == [
        ("n3.png", NORMAL),
        ("a1.png", ABNORMAL),
        ("a2.png", ABNORMAL),
    ]
    assert splits.test[1].masks == (root / "masks" / "a1.png",)
    assert splits.test[2].masks == () and splits.has_masks
    assert {s.clsname for s in splits.train + splits.test} == {"chest"}
    assert splits.train[0].image == root / "images" / "n1.png"


def test_mask_may_be_a_png_beside_a_jpeg_image(tmp_path):
    spec = {"train": {"0": ["n.jpeg"]}, "test": {"1": ["sub/a.jpeg"]}}
    root = _dataset(tmp_path / "d", spec, masks=("sub/a.png",))
    assert read_cxr_json(root).test[0].masks == (root / "masks" / "sub" / "a.png",)


def test_train_abnormals_join_the_pool_and_unlabeled_is_ignored(tmp_path):
    spec = {
        "train": {"0": ["n1.png"], "1": ["a0.png"], "unlabeled": {"0": ["u.png"], "1": []}},
        "test": {"0": ["n2.png"], "1": ["a1.png"]},
    }
    splits = read_cxr_json(_dataset(tmp_path / "d", spec))
    assert [(s.image.name, s.label) for s in splits.train] == [("n1.png", 0), ("a0.png", 1)]


def test_ddad_style_image_folder_is_found(tmp_path):
    root = _dataset(tmp_path / "rsna", SPEC, folder="train_png_512")
    (root / "other").mkdir()
    assert read_cxr_json(root).test[0].image == root / "train_png_512" / "n3.png"
    flat = _dataset(tmp_path / "flat", SPEC, folder=".")
    assert read_cxr_json(flat).train[0].image == flat / "n1.png"


def test_missing_data_json(tmp_path):
    with pytest.raises(AnomedError, match=r"data\.json: no such file"):
        read_cxr_json(tmp_path)


def test_bad_json_names_line_and_column(tmp_path):
    (tmp_path / "data.json").write_text('{"train": {"0": ["a.png"]},\n "test": {"0": [b.png]}}')
    with pytest.raises(AnomedError, match=r"data\.json:2:17: not valid JSON"):
        read_cxr_json(tmp_path)


def test_a_listed_file_that_does_not_exist_is_named(tmp_path):
    root = _dataset(tmp_path / "d", SPEC)
    (root / "images" / "a2.png").unlink()
    with pytest.raises(AnomedError, match=r'"test"/"1" lists a2\.png, but .*a2\.png does not'):
        read_cxr_json(root)


def test_empty_test_and_empty_train_are_refused(tmp_path):
    root = _dataset(tmp_path / "a", {"train": {"0": ["n.png"]}, "test": {"0": [], "1": []}})
    with pytest.raises(AnomedError, match='"test" lists no images'):
        read_cxr_json(root)
    root = _dataset(tmp_path / "b", {"train": {"1": ["a.png"]}, "test": {"0": ["n.png"]}})
    with pytest.raises(AnomedError, match='"train"/"0" is empty'):
        read_cxr_json(root)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([1, 2], 'expected an object with "train" and "test"'),
        ({"train": {"0": ["a.png"]}}, 'expected an object with "train" and "test"'),
        ({"train": ["a.png"], "test": {"0": ["b.png"]}}, '"train" must be an object'),
        ({"train": {"0": "a.png"}, "test": {"0": ["b.png"]}}, '"train"/"0" must be a list'),
        ({"train": {"0": []}, "test": {"0": []}}, "lists no images"),
    ],
)
def test_malformed_structure(tmp_path, spec, message):
    (tmp_path / "data.json").write_text(json.dumps(spec))
    with pytest.raises(AnomedError, match=message):
        read_cxr_json(tmp_path)


def test_unknown_keys_and_train_test_overlap_warn(tmp_path):
    spec = {"train": {"0": ["n1.png"], "2": ["x.png"]}, "test": {"0": ["n1.png"]}}
    root = _dataset(tmp_path / "d", spec)
    with pytest.warns(UserWarning) as record:
        read_cxr_json(root)
    messages = " ".join(str(w.message) for w in record)
    assert "keys ['2']" in messages and "both in" in messages
