"""Volumes from the CLI: slices -> CondPrompt -> cross-sequence/view table -> 3D prediction."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from anomed.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol")
    heads, slices, ckpt = root / "heads", root / "t1ax", root / "cp"
    assert (
        main(
            [
                "data",
                "phantom-volumes",
                "-o",
                str(heads),
                "--n-cases",
                "4",
                "--shape",
                "40",
                "40",
                "32",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "volume-slices",
                "--volumes",
                str(heads),
                "--sequence",
                "t1",
                "--view",
                "axial",
                "-o",
                str(slices),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "train",
                "--method",
                "condprompt",
                "--data",
                str(slices),
                "--k",
                "4",
                "--epochs",
                "1",
                "--image-size",
                "112",
                "-o",
                str(ckpt),
                "--set",
                "method_args.n_ctx=4",
                "--set",
                "data.n_val=2",
            ]
        )
        == 0
    )
    return heads, ckpt


@pytest.mark.slow  # a few seconds: full protocol runs
def test_cross_sequence_cross_view_table(trained, tmp_path, capsys):
    heads, ckpt = trained
    out = tmp_path / "cross"
    assert (
        main(
            [
                "-q",
                "crossseq",
                str(ckpt),
                "--volumes",
                str(heads),
                "-o",
                str(out),
                "--sequences",
                "t1",
                "flair",
                "--views",
                "axial",
                "coronal",
            ]
        )
        == 0
    )
    table = (out / "cross_protocol.md").read_text()
    assert "| pixel_auroc | axial | coronal |" in table and "| flair |" in table
    results = json.loads((out / "cross_protocol.json").read_text())
    assert 0 <= results["flair"]["coronal"]["pixel_auroc"] <= 1


def test_predict_nifti_and_dicom_series(trained, tmp_path):
    heads, ckpt = trained
    case = next(p for p in sorted(heads.iterdir()) if (p / "dicom_t1").is_dir())
    out = tmp_path / "pred"
    assert (
        main(
            [
                "-q",
                "predict",
                str(ckpt),
                str(case / "t1.nii.gz"),
                str(case / "dicom_t1"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    source = nib.load(case / "t1.nii.gz")
    amap = nib.load(out / "volumes" / "t1_anomaly.nii.gz")
    assert amap.shape == source.shape and np.allclose(amap.affine, source.affine)
    rows = list(csv.DictReader(open(out / "volumes" / "t1_slices.csv")))
    assert rows and set(rows[0]) == {"slice", "view", "score", "decision"}
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    assert len(preds) == 2 and abs(preds[0]["score"] - preds[1]["score"]) < 0.05


def test_bad_volumes_are_reported_and_skipped(trained, tmp_path, capsys):
    _, ckpt = trained
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    four_d = tmp_path / "fourd.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), four_d)
    assert (
        main(["-q", "predict", str(ckpt), str(truncated), str(four_d), "-o", str(tmp_path / "o")])
        == 1  # every input failed
    )
    rows = json.loads((tmp_path / "o" / "predictions.json").read_text())["predictions"]
    reasons = {s["file"].rsplit("/", 1)[-1]: s["error"] for s in rows if s["status"] == "error"}
    assert "cut.nii.gz" in reasons["cut.nii.gz"] and "4D" in reasons["fourd.nii.gz"]
