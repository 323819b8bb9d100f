"""Whole folders of mixed inputs through predict, and hostile arrays through the Python API.

A folder is scanned, not trusted: every image, NIfTI file and DICOM series in it is scored side
by side (a DICOM file does not swallow its neighbours), masks and hidden files are left out and
counted, non-image files are listed, pipes are never opened, link loops do not hang."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fuzz_corpus import dicom_series, good_png, gray, nifti, phantom_volume, save
from fuzz_helpers import changed_outside, run_cli, tree_state

from anomed.engine.predict import read_predictions


def mixed_folder(root: Path) -> dict[str, list[str]]:
    """A scan folder: what must be scored, fail, or be left out (names relative to root)."""
    good_png(root, "a.png", 1)
    good_png(root / "sub", "b.png", 2)
    save(root / "sub" / "c.tiff", gray(40, 50, 3))
    nib.save(nifti(phantom_volume()), root / "sub" / "vol.nii.gz")
    dicom_series(root / "series")  # a DICOM series ...
    good_png(root / "series", "beside_dicom.png", 4)  # ... with a PNG and a NIfTI beside it
    nib.save(nifti(phantom_volume(seed=2)), root / "series" / "beside_dicom.nii")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "void.nii.gz").write_bytes(b"")
    good_png(root / "masks", "a_mask.png", 5)
    good_png(root, "b_mask.png", 6)
    good_png(root / ".cache", "hidden.png", 7)
    (root / "notes.txt").write_text("not an image")
    os.mkfifo(root / "pipe.png")
    (root / "gone.png").symlink_to(root / "nowhere.png")
    (root / "sub" / "loop").symlink_to(root)  # a directory loop
    return {
        "ok": ["a.png", "sub/b.png", "sub/c.tiff", "sub/vol.nii.gz", "series",
               "series/beside_dicom.png", "series/beside_dicom.nii"],
        "error": ["broken.png", "void.nii.gz", "gone.png"],
        "left_out": ["masks/a_mask.png", "b_mask.png", ".cache/hidden.png", "notes.txt",
                     "pipe.png"],
    }  # fmt: skip


@pytest.fixture(scope="module")
def scanned(fuzz_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("scan") / "in"
    expect = mixed_folder(root)
    out = root.parent / "out"
    before = tree_state(root.parent)
    result = run_cli(["-q", "predict", fuzz_run, root, "-o", out])
    rows = {os.path.relpath(r["file"], root): r for r in read_predictions(out)}
    return result, rows, expect, out, changed_outside(before, tree_state(root.parent), out)


def test_folder_scan_scores_every_kind_side_by_side(scanned):
    result, rows, expect, out, changed = scanned
    assert result.code == 0 and "Traceback" not in result.err and changed == []
    for name in expect["ok"]:
        assert rows[name]["status"] == "ok", (name, rows.get(name))
        assert (out / rows[name]["overlay"]).is_file()
    for name in expect["error"]:
        assert rows[name]["status"] == "error" and "fix" in rows[name]["error"].lower()
    assert sorted(rows) == sorted(expect["ok"] + expect["error"])


def test_folder_scan_counts_what_it_left_out_and_failed(scanned):
    result, rows, expect, out, _ = scanned
    n, n_failed = len(rows), len(expect["error"])
    assert f"{n - n_failed} of {n} inputs scored" in result.out
    assert f"{n_failed} failed" in result.out
    assert f"left out {len(expect['left_out'])} files" in result.out
    import json

    excluded = json.loads((out / "predictions.json").read_text())["excluded"]
    root = Path(next(iter(rows.values()))["file"]).parent
    names = sorted(os.path.relpath(e["file"], root) for e in excluded)
    assert names == sorted(expect["left_out"])


def test_a_batch_where_everything_fails_exits_1(fuzz_run, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"nope")
    (tmp_path / "in" / "y.nii").write_bytes(b"nope")
    result = run_cli(["-q", "predict", fuzz_run, tmp_path / "in", "-o", tmp_path / "out"])
    assert result.code == 1 and "2 of 2 inputs failed" in result.err
    assert "0 of 2 inputs scored" in result.out
    assert [r["status"] for r in read_predictions(tmp_path / "out")] == ["error", "error"]


def test_non_utf8_folder_of_good_and_bad_files(fuzz_run, tmp_path):
    folder = os.path.join(os.fsencode(tmp_path), b"scans_\xff")
    os.mkdir(folder)
    good_png(Path(os.fsdecode(folder)), os.fsdecode(b"ok_\xfe.png"))
    with open(os.path.join(folder, b"bad_\xfd.png"), "wb") as fh:
        fh.write(b"junk")
    result = run_cli(["-q", "predict", fuzz_run, os.fsdecode(folder), "-o", tmp_path / "out"])
    assert result.code == 0 and "Traceback" not in result.err
    assert "ok_\\xfe.png: score" in result.out and "bad_\\xfd.png: error:" in result.out
    assert "1 of 2 inputs scored" in result.out


def test_the_same_image_twice_and_a_duplicate_name_in_two_folders(fuzz_run, tmp_path):
    a = good_png(tmp_path / "x", "scan.png", 1)
    good_png(tmp_path / "y", "scan.png", 2)
    argv = ["-q", "predict", fuzz_run, a, a, tmp_path / "x", tmp_path / "y", "-o", tmp_path / "o"]
    result = run_cli(argv)
    rows = read_predictions(tmp_path / "o")
    assert result.code == 0 and len(rows) == 2  # each file once
    assert len({r["overlay"] for r in rows}) == 2  # no overlay overwrites another


# ----------------------------------------------------------------------------- Python API

ARRAYS = {
    "nan": (np.full((32, 32), np.nan), "nan"),
    "inf": (np.full((32, 32, 3), np.inf), "nan or inf"),
    "negative": (-np.ones((32, 32)), "[0, 1]"),
    "8-bit-range": (np.full((32, 32), 200.0), "[0, 1]"),
    "uint8-unscaled": (np.full((32, 32), 200, np.uint8), "[0, 1]"),
    "object": (np.array([["a"] * 32] * 32, object), "dtype"),
    "strings": (np.array([["a"] * 32] * 32), "dtype"),
    "complex": (np.ones((32, 32), complex), "dtype"),
    "4d": (np.zeros((1, 32, 32, 3)), "shape"),
    "1d": (np.zeros(32), "shape"),
    "0d": (np.array(0.5), "shape"),
    "empty": (np.zeros((0, 32)), "shape"),
    "4-channel": (np.zeros((32, 32, 4)), "shape"),
    "2-channel": (np.zeros((32, 32, 2)), "shape"),
    "2x2": (np.zeros((2, 2)), "too small"),
    "1x100000": (np.zeros((1, 100_000)), "too small"),
    "list": ([[0.5] * 32] * 32, "neither"),
    "none": (None, "neither"),
    "missing-path": ("/nope/scan.png", "no such file"),
    "bytes-path": (b"/nope/\xff.png", "no such file"),
}


@pytest.fixture(scope="module")
def api_rows(fuzz_run) -> dict:
    """Every hostile value between two good arrays, scored in one `Detector.predict` call."""
    import anomed

    detector = anomed.load(fuzz_run, device="cpu", batch_size=64)
    good = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    names = sorted(ARRAYS)
    rows = detector.predict([good, *(ARRAYS[n][0] for n in names), good])
    assert rows[0].ok and rows[-1].ok  # the good inputs around them are scored
    return {"detector": detector, **dict(zip(names, rows[1:-1], strict=True))}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_detector_turns_a_hostile_input_into_an_error_row(api_rows, name):
    bad, fragment = api_rows[name], ARRAYS[name][1]
    assert bad.status == "error" and bad.decision is None and bad.score is None  # not "normal"
    assert fragment in bad.error.lower() and "fix" in bad.error.lower(), bad.error


def test_detector_accepts_odd_but_valid_arrays(api_rows):
    detector = api_rows["detector"]
    rng = np.random.default_rng(1)
    arrays = [
        rng.random((40, 40)) > 0.5,  # bool
        (rng.random((40, 40)) > 0.5).astype(np.int64),  # 0/1 integers
        rng.random((40, 40, 1)).astype(np.float16),
        rng.random((9, 4000, 3)),  # extreme aspect ratio, float64
    ]
    rows = detector.predict(arrays, keep_images=True)
    assert [r.status for r in rows] == ["ok"] * 4
    assert all(r.decision in ("normal", "abnormal") for r in rows)
    assert max(rows[3].image.shape[:2]) <= 1024  # kept display copies are bounded
