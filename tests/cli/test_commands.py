"""The CLI end to end on tiny phantoms: train -> eval -> predict, and its error messages."""

import json

import cv2
import numpy as np
import pytest

from anomed.cli import build_parser, main


def test_every_command_has_help(capsys):
    parser = build_parser()
    for argv in (["train"], ["eval"], ["predict"], ["data", "phantom"], ["demo"], ["methods"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*argv, "--help"])
        assert exc.value.code == 0
        assert "usage: anomed" in capsys.readouterr().out


def test_train_writes_checkpoint_and_shot_list(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "config.yaml", "shots.yaml", "history.json"} <= names
    history = json.loads((checkpoint / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]


def test_eval_writes_reports(checkpoint, tmp_path, capsys):
    assert main(["-q", "eval", str(checkpoint), "--output", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and 0.0 <= metrics["pixel_auroc"] <= 1.0
    for name in ("metrics.md", "scores.csv", "heatmaps.png", "roc.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "random-init backbone" in capsys.readouterr().out


def _write_inputs(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    gray = (rng.random((80, 90)) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "plain.png"), gray)
    cv2.imwrite(str(folder / "deep.png"), (rng.random((64, 64)) * 4095).astype(np.uint16))
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([gray, gray, gray, gray]))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "notes.txt").write_text("not an image")


def test_predict_png_folder_16bit_rgba_and_skips_bad_file(checkpoint, tmp_path, capsys):
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["-q", "predict", str(checkpoint), str(tmp_path / "in"), "-o", str(out)]) == 0
    report = json.loads((out / "predictions.json").read_text())
    ok = [p for p in report["predictions"] if p["status"] == "ok"]
    assert sorted(p["file"].rsplit("/", 1)[-1] for p in ok) == [
        "alpha.png",
        "deep.png",
        "plain.png",
    ]
    failed = [p for p in report["predictions"] if p["status"] == "error"]
    assert [p["file"].rsplit("/", 1)[-1] for p in failed] == ["broken.png"]
    assert all(p["decision"] in ("normal", "abnormal") for p in ok)
    assert len(list((out / "overlays").glob("*.png"))) == 3
    assert (out / "predictions.csv").read_text().startswith("file,status,score,threshold")
    assert "3 of 4 inputs scored" in capsys.readouterr().out


def test_predict_single_png(checkpoint, tmp_path):
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert (
        main(["-q", "predict", str(checkpoint), str(tmp_path / "in" / "plain.png"), "-o", str(out)])
        == 0
    )
    assert len(json.loads((out / "predictions.json").read_text())["predictions"]) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "missing.png: no such file or folder"),
        (lambda d: d.joinpath("empty").mkdir() or d / "empty", "empty: folder holds no"),
        (lambda d: d.joinpath("a.txt").write_text("x") and d / "a.txt", "a.txt: not an image file"),
    ],
)
def test_predict_bad_inputs_give_one_clear_message(checkpoint, tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["-q", "predict", str(checkpoint), str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anomed: error:") and message in err and "Traceback" not in err


def test_predict_corrupt_file_alone_names_it(checkpoint, tmp_path, capsys):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["-q", "predict", str(checkpoint), str(bad), "-o", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "scan.png: error" in out and "0 of 1 inputs scored" in out


def test_train_without_data_explains(capsys):
    assert main(["train"]) == 2
    assert "no dataset given" in capsys.readouterr().err


def test_unknown_method_lists_known(phantom_root, tmp_path, capsys):
    argv = ["train", "--data", str(phantom_root), "--method", "nope", "-o", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'; known: " in err and "mediclip" in err and "mvfa" in err


def test_empty_dataset_folder_explains(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    assert main(["train", "--data", str(tmp_path / "ds"), "-o", str(tmp_path / "o")]) == 2
    assert str(tmp_path / "ds") in capsys.readouterr().err


def test_phantom_command_refuses_to_overwrite(tmp_path, capsys):
    argv = [
        "data",
        "phantom",
        "-o",
        str(tmp_path / "p"),
        "--n-train",
        "2",
        "--n-test-normal",
        "1",
        "--n-test-abnormal",
        "1",
        "--size",
        "64",
    ]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err


def test_test_set_selection_is_labelled_as_leaking(phantom_root, tmp_path, capsys):
    out = tmp_path / "leak"
    argv = [
        "-q",
        "train",
        "--data",
        str(phantom_root),
        "--k",
        "2",
        "--epochs",
        "1",
        "--image-size",
        "112",
        "--select",
        "test-leak",
        "--output",
        str(out),
        "--eval",
        "--set",
        "data.n_val=2",
    ]
    assert main(argv) == 0
    assert "leaks test labels" in capsys.readouterr().out
    metrics = json.loads(next((out / "eval").glob("*/metrics.json")).read_text())
    assert metrics["selected_by"] == "test-leak" and "leaks test labels" in metrics["label"]
