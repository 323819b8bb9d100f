import numpy as np
import pytest
import torch

from anomed.data.datasets import SupportSet
from anomed.methods import create_method


def _support(n=3, size=112):
    rng = np.random.default_rng(0)
    images = [
        np.clip(rng.normal(0.4, 0.1, (size, size, 3)), 0, 1).astype(np.float32) for _ in range(n)
    ]
    return SupportSet(images, [0] * n, [np.zeros((size, size), bool)] * n, [True] * n, "brain")


def _prepared(name, backbone, **args):
    method = create_method(name, backbone, args)
    method.support, method.class_name = _support(), "brain"
    method.prepare()
    return method.eval()


def test_memory_bank_scores_support_images_zero(tiny_backbone):
    method = _prepared("memorybank", tiny_backbone, coreset=None, smoothing=0.0)
    images = torch.from_numpy(np.stack(_support().images).transpose(0, 3, 1, 2))
    out = method(images)
    assert out.anomaly_map.shape == (3, 112, 112)
    unseen = float(method(torch.rand(1, 3, 112, 112)).image_score[0])
    # every support patch is in the bank: distance ~0 (cdist's matmul mode rounds at ~1e-3)
    assert float(out.anomaly_map.abs().max()) < 0.05 * unseen


def test_winclip_zero_shot_probabilities(tiny_backbone):
    method = _prepared("winclip", tiny_backbone)
    out = method(torch.rand(2, 3, 112, 112))
    assert out.anomaly_map.shape == (2, 112, 112)
    assert 0 <= float(out.anomaly_map.min()) and float(out.anomaly_map.max()) <= 1
    assert not method.banks  # zero-shot keeps no references


def test_winclip_plus_adds_references_and_round_trips(tiny_backbone, tmp_path):
    from anomed.config import RunConfig
    from anomed.engine.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint

    method = _prepared("winclip+", tiny_backbone)
    assert sorted(method.banks) == ["patch", "win2", "win3"]
    cfg = RunConfig(method="winclip+")
    cfg.backbone.image_size = 112
    save_checkpoint(tmp_path, method, CheckpointInfo(run=cfg, class_name="brain"))
    loaded, _ = load_checkpoint(tmp_path)
    images = torch.rand(1, 3, 112, 112)
    torch.testing.assert_close(loaded(images).anomaly_map, method(images).anomaly_map)


@pytest.mark.parametrize("preset", ["anomed", "reference"])
def test_winclip_image_score_depends_on_the_image(tiny_backbone, preset):
    from anomed.methods import create_method

    method = create_method("winclip", tiny_backbone, {}, preset)
    method.class_name = "brain"
    images = torch.rand(3, 3, 112, 112)
    images[1] = 0.0
    with torch.no_grad():
        score = method(images).image_score
    assert float(score.max() - score.min()) > 1e-4  # was a constant 0.5: the pass stopped early
