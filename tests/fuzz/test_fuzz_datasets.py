"""Hostile files inside a dataset: `eval` (and `train`) stop with one line naming the file and
a fix (exit 2) instead of a traceback or metrics over a silently different test set, and write
no report."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fuzz_corpus import IMAGE_CASES, save
from fuzz_helpers import assert_clean_error, changed_outside, run_cli, tree_state

CASES_BY_NAME = {c.name: c for c in IMAGE_CASES}


def put(case: str, sub: str) -> Callable[[Path], str]:
    """Write corpus case `case` into `sub` of the dataset; returns its file name."""

    def mutate(data: Path) -> str:
        return CASES_BY_NAME[case].write(data / sub).name

    return mutate


def nan_mask(data: Path) -> str:
    image = sorted((data / "test" / "abnormal").iterdir())[0]
    for old in (data / "test" / "masks").glob(f"{image.stem}*"):
        old.unlink()
    arr = np.zeros((96, 96), np.float32)
    arr[5, 5] = np.nan
    return save(data / "test" / "masks" / f"{image.stem}_mask.tiff", arr).name


def text(sub: str, name: str, content: bytes) -> Callable[[Path], str]:
    def mutate(data: Path) -> str:
        (data / sub).mkdir(parents=True, exist_ok=True)
        (data / sub / name).write_bytes(content)
        return name

    return mutate


EVAL_CASES = [
    ("nan-float-test-image", put("nan-float-tiff", "test/normal")),
    ("truncated-test-image", put("truncated-png", "test/abnormal")),
    ("multi-page-test-image", put("multi-page-tiff", "test/normal")),
    ("bomb-test-image", put("header-bomb-png", "test/normal")),
    ("text-as-png-test-image", put("text-as-png", "test/abnormal")),
    ("nan-mask", nan_mask),
    ("binary-samples-json", text("samples", "test.json", b"\xff\xfe garbage")),
    ("nested-samples-json", text("samples", "test.json", b"[" * 100_000 + b"\n")),
]


@pytest.mark.parametrize(("name", "mutate"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_stops_on_a_hostile_dataset_file(name, mutate, fuzz_run, phantom_root, tmp_path):
    data = Path(shutil.copytree(phantom_root, tmp_path / "data"))
    if "samples" in name:  # a samples-json dataset needs the other file too
        (data / "samples").mkdir()
        (data / "samples" / "train.json").write_text('{"filename": "x.png", "label": 0}\n')
    bad = mutate(data)
    before = tree_state(tmp_path)
    result = run_cli(["-q", "eval", fuzz_run, "--data", data, "-o", tmp_path / "out"])
    assert_clean_error(result, bad)
    assert changed_outside(before, tree_state(tmp_path)) == []


def test_train_stops_on_a_hostile_shot_image(phantom_root, tmp_path):
    data = Path(shutil.copytree(phantom_root, tmp_path / "data"))
    for image in (data / "train" / "normal").iterdir():  # every pool image is broken
        image.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    argv = ["-q", "train", "--data", data, "--k", "2", "--epochs", "1", "--image-size", "64"]
    result = run_cli([*argv, "-o", tmp_path / "run"])
    assert_clean_error(result, "train/normal", "not a readable image")
    assert not (tmp_path / "run").exists()


def test_broken_links_in_a_folder_dataset_are_named(fuzz_run, phantom_root, tmp_path):
    data = Path(shutil.copytree(phantom_root, tmp_path / "data"))
    (data / "test" / "normal" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    result = run_cli(["-q", "eval", fuzz_run, "--data", data, "-o", tmp_path / "out"])
    assert result.code == 0 and "Traceback" not in result.err
    assert "anomed: warning:" in result.err and "gone.png" in result.err
