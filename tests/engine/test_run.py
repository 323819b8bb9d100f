"""Training jobs (anomed.engine.run): calibration never saves a threshold it cannot load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomed.engine import run
from anomed.engine.evaluate import EvalResult
from anomed.errors import AnomedError


def _validation(scores, maps) -> EvalResult:
    n = len(scores)
    return EvalResult(
        metrics={},
        labels=np.zeros(n, np.int64),
        scores=np.asarray(scores, np.float32),
        maps=np.asarray(maps, np.float16),
        masks=np.zeros((n, 2, 2), bool),
        has_mask=np.zeros(n, bool),
    )


@pytest.mark.parametrize("bad", ["score", "map"])
def test_calibration_refuses_non_finite_validation_outputs(monkeypatch, bad):
    """A NaN validation score used to become a NaN threshold: the checkpoint was saved, and
    every later load failed on 'calibration.threshold: expected a finite number'."""
    scores, maps = [0.1, 0.2, 0.3], np.zeros((3, 2, 2))
    if bad == "score":
        scores[1] = float("nan")
    else:
        maps[2, 0, 0] = np.inf
    monkeypatch.setattr(run, "evaluate_items", lambda *a: _validation(scores, maps))
    with pytest.raises(AnomedError, match="non-finite .* on 1 of 3 validation images"):
        run.calibrate(None, [{}], 4, torch.device("cpu"), 0.05)


def test_calibration_on_finite_validation_outputs(monkeypatch):
    maps = np.linspace(0, 1, 12).reshape(3, 2, 2)
    monkeypatch.setattr(run, "evaluate_items", lambda *a: _validation([0.1, 0.2, 0.3], maps))
    cal = run.calibrate(None, [{}], 4, torch.device("cpu"), 0.05)
    assert cal.threshold == pytest.approx(0.3) and cal.map_min < cal.map_max


def test_eval_on_the_training_dataset_named_again_keeps_the_shots_out_of_test(
    phantom_root, tmp_path
):
    """`eval CKPT --data <its own dataset>` read the folder afresh: abnormal test images that
    training had moved into its pool (the shots, --abnormal-from-test) were tested on again."""
    from anomed.config import DataConfig, RunConfig
    from anomed.data.layouts import load_dataset
    from anomed.engine.checkpoint import CheckpointInfo

    data = DataConfig(root=str(phantom_root), k=1, n_val=0, carve_abnormal_from_test=True)
    info = CheckpointInfo(run=RunConfig(method="mvfa", data=data))
    held_out = [s.image for s in run.eval_splits(info, None).test]
    assert [s.image for s in run.eval_splits(info, str(phantom_root)).test] == held_out
    assert len(held_out) < len(load_dataset(phantom_root).test)  # the shot is not in test
    (tmp_path / "link").symlink_to(phantom_root)
    assert [s.image.name for s in run.eval_splits(info, str(tmp_path / "link")).test] == [
        p.name for p in held_out
    ]


def test_a_run_stores_absolute_data_paths(phantom_root, tmp_path, monkeypatch):
    """A relative --data was saved as given, so `eval RUN` from another folder found no data."""
    from anomed.config import DataConfig, RunConfig

    monkeypatch.chdir(phantom_root.parent)
    cfg = RunConfig(method="mediclip", data=DataConfig(root=phantom_root.name, k=2))
    cfg.output_dir = str(tmp_path / "out")
    prepared = run.prepare_run(cfg)
    assert prepared.cfg.data.root == str(phantom_root)
