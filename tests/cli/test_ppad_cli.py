"""PPAD from the CLI on tiny chest phantoms in PPAD's data.json layout."""

import json

from anomed.cli import main


def test_ppad_train_eval_predict(tmp_path, capsys):
    data = tmp_path / "chest"
    assert (
        main(
            [
                "data",
                "phantom-chest",
                "-o",
                str(data),
                "--layout",
                "data-json",
                "--n-train",
                "8",
                "--n-test-normal",
                "3",
                "--n-test-abnormal",
                "3",
                "--size",
                "112",
            ]
        )
        == 0
    )
    out = tmp_path / "ppad"
    assert (
        main(
            [
                "-q",
                "train",
                "--method",
                "ppad",
                "--data",
                str(data),
                "--k",
                "4",
                "--epochs",
                "1",
                "--image-size",
                "112",
                "--preprocess",
                "cxr",
                "-o",
                str(out),
                "--eval",
                "--set",
                "data.n_val=2",
                "--set",
                "method_args.n_ctx=4",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Decisions at the calibrated threshold" in printed and "at 0.5" in printed
    metrics = json.loads((out / "eval" / "chest" / "metrics.json").read_text())
    assert {"acc_calibrated", "f1_calibrated", "acc_0.5", "f1_0.5"} <= set(metrics)
    images = sorted((data / "images").glob("*.png"))[:2]
    assert main(["-q", "predict", str(out), *map(str, images), "-o", str(tmp_path / "p")]) == 0
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"]) == 2
