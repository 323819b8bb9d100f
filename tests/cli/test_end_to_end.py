"""Slow end-to-end runs: the demo as a user runs it, and MediCLIP on the shared real data."""

import json

import pytest
from shared_data import shared_dataset

from anomed.cli import main

pytestmark = pytest.mark.slow


def test_demo_writes_metrics_before_and_after(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--output", str(out), "--epochs", "5"]) == 0
    assert main(["-q", "demo", "--output", str(out), "--epochs", "5"]) == 0  # rerunnable
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert 0.0 <= metrics[key] <= 1.0
        assert 0.0 <= metrics["before_training"][key] <= 1.0
    for name in ("heatmaps.png", "roc.png", "metrics.md", "scores.csv"):
        assert (out / "eval" / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "before training" in printed and "after training" in printed
    assert "random-init" in printed


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "pixel"), [("brainmri", False), ("busi", True)])
def test_train_and_eval_on_shared_data(name, pixel, tmp_path):
    root = shared_dataset(name)
    out = tmp_path / name
    assert (
        main(
            [
                "-q",
                "train",
                "--data",
                str(root),
                "--k",
                "4",
                "--epochs",
                "1",
                "--output",
                str(out),
                "--eval",
            ]
        )
        == 0
    )
    metrics = json.loads(next((out / "eval").glob("*/metrics.json")).read_text())
    assert 0.0 <= metrics["image_auroc"] <= 1.0
    assert (metrics["pixel_auroc"] is not None) == pixel  # brainmri has no masks: N/A
    assert metrics["label"].endswith("(random-init backbone)")
    # MediCLIP's own split: its published row beside ours (issue 23)
    report = next((out / "eval").glob("*/metrics.md")).read_text()
    assert "published mediclip" in report and "this test set differs" not in report
    assert metrics["test_split"]["n_test"] == metrics["n_test"]
