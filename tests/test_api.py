"""The Python API (`anomed.train`, `anomed.evaluate`, `anomed.load(...).predict`) and what
`import anomed` costs."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import anomed
from anomed.api import run_config


def test_import_anomed_loads_no_torch():
    code = "import sys, anomed; anomed.__version__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_evaluate_load_predict(phantom_root, tmp_path):
    run = anomed.train(
        phantom_root,
        "mediclip",
        k=2,
        epochs=1,
        image_size=64,
        output=tmp_path / "r",
        overrides={"data.n_val": 2},
    )
    assert run.output_dir == tmp_path / "r" and run.info.calibration.threshold is not None
    metrics = anomed.evaluate(run.output_dir, output=tmp_path / "e")
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and metrics["method"] == "mediclip"
    detector = anomed.load(run.output_dir, device="cpu")
    image = next((phantom_root / "test" / "abnormal").iterdir())
    preds = detector.predict([image, np.zeros((50, 60), np.float32), tmp_path / "missing.png"])
    assert [p.status for p in preds] == ["ok", "ok", "error"]
    assert preds[0].anomaly_map.shape == (64, 64) and preds[0].decision in ("normal", "abnormal")
    assert "missing.png" in preds[2].error and preds[2].decision is None


def test_bad_settings_fail_before_any_data_are_read(tmp_path):
    with pytest.raises(anomed.AnomedError, match="method_args.image_loss"):
        anomed.train(
            tmp_path / "nowhere", "madclip", overrides={"method_args.image_loss": "sigmod"}
        )
    with pytest.raises(anomed.AnomedError, match="train.amp: expected true or false"):
        anomed.train(tmp_path / "nowhere", overrides={"train.amp": "no"})
    with pytest.raises(TypeError, match="unknown setting 'epoch'"):
        anomed.train(tmp_path / "nowhere", epoch=3)


def test_random_init_backbone_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    anomed.load_backbone(anomed.BackboneConfig(model="anomed-tiny", image_size=64))
    assert torch.equal(torch.rand(3), expected)


def test_output_none_means_the_default_folder(tmp_path):
    """output=None used to become the text "None": the run went to a folder named None."""
    cfg = run_config(tmp_path / "data", output=None)
    assert cfg.output_dir == ""
    assert run_config(tmp_path / "data", output=tmp_path / "r").output_dir == str(tmp_path / "r")
