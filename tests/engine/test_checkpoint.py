import json

import pytest
import torch

from anomed.backbone import BackboneConfig, load_backbone
from anomed.config import RunConfig
from anomed.engine.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from anomed.engine.evaluate import calibrate_threshold
from anomed.errors import AnomedError
from anomed.methods import create_method


def _run_config():
    cfg = RunConfig(method="mediclip")
    cfg.backbone = BackboneConfig(model="anomed-tiny", image_size=112)
    return cfg


def test_round_trip_gives_identical_outputs(tmp_path, tiny_backbone):
    method = create_method("mediclip", tiny_backbone, {"n_ctx": 4}).eval()
    with torch.no_grad():
        method.prompts.ctx.add_(1.0)
    save_checkpoint(tmp_path, method, CheckpointInfo(run=_run_config()))
    assert {p.name for p in tmp_path.iterdir()} == {
        "model.safetensors",
        "config.yaml",
        "manifest.json",
    }
    loaded, info = load_checkpoint(tmp_path)
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).anomaly_map, method(images).anomaly_map)
    assert info.run.method_args["n_ctx"] == 4


def test_changed_random_backbone_is_detected(tmp_path):
    cfg = _run_config()
    method = create_method("mediclip", load_backbone(cfg.backbone), {})
    info = CheckpointInfo(run=cfg)
    save_checkpoint(tmp_path, method, info)
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(text.replace("init_seed: 0", "init_seed: 5"))
    with pytest.raises(AnomedError, match="does not match manifest.json"):
        load_checkpoint(tmp_path)  # a hand edit is caught first
    _rewrite_manifest(tmp_path)
    with pytest.raises(AnomedError, match="init_seed 5\\) is not the one these trained weights"):
        load_checkpoint(tmp_path)


def _rewrite_manifest(folder):
    from anomed.engine.checkpoint import CONFIG, MANIFEST, WEIGHTS, sha256_file

    sums = {name: sha256_file(folder / name) for name in (WEIGHTS, CONFIG)}
    (folder / MANIFEST).write_text(json.dumps({"sha256": sums}))


def test_mixed_or_partial_checkpoint_is_refused(tmp_path):
    cfg = _run_config()
    method = create_method("mediclip", load_backbone(cfg.backbone), {})
    save_checkpoint(tmp_path / "a", method, CheckpointInfo(run=cfg))
    with torch.no_grad():
        method.prompts.ctx.add_(1.0)
    save_checkpoint(tmp_path / "b", method, CheckpointInfo(run=cfg))
    (tmp_path / "a" / "model.safetensors").write_bytes(
        (tmp_path / "b" / "model.safetensors").read_bytes()
    )
    with pytest.raises(AnomedError, match="model.safetensors: does not match manifest.json"):
        load_checkpoint(tmp_path / "a")  # new weights beside the old config: refused
    (tmp_path / "b" / "manifest.json").unlink()
    with pytest.raises(AnomedError, match="manifest.json is missing"):
        load_checkpoint(tmp_path / "b")


def test_non_finite_weights_are_refused(tmp_path):
    cfg = _run_config()
    method = create_method("mediclip", load_backbone(cfg.backbone), {})
    with torch.no_grad():
        method.prompts.ctx[0, 0, 0] = float("nan")
    save_checkpoint(tmp_path, method, CheckpointInfo(run=cfg))
    with pytest.raises(AnomedError, match="non-finite"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_is_explained(tmp_path):
    with pytest.raises(AnomedError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "absent")
    with pytest.raises(AnomedError, match="model.safetensors is missing"):
        load_checkpoint(tmp_path)


def test_threshold_by_hand():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert calibrate_threshold(scores, 0.0) == 1.0
    assert calibrate_threshold(scores, 0.1) == 0.9  # one normal of ten (1.0) lies above
    assert calibrate_threshold(scores, 0.25) == 0.8
