import numpy as np
import pytest
import torch

from anomed.data.datasets import SupportSet, collate
from anomed.methods import create_method
from anomed.methods.mvfa import BANK_MAP, TEXT_MAP


def _support(n_normal=2, n_abnormal=2, size=112, masks=True):
    rng = np.random.default_rng(0)
    images, labels, ms, has = [], [], [], []
    for i in range(n_normal + n_abnormal):
        label = int(i >= n_normal)
        image = np.clip(rng.normal(0.4, 0.1, (size, size, 3)), 0, 1).astype(np.float32)
        mask = np.zeros((size, size), bool)
        if label:
            mask[30:60, 40:70] = True
            image[mask] = 0.9
        images.append(image)
        labels.append(label)
        ms.append(mask)
        has.append(masks or label == 0)
    return SupportSet(images, labels, ms, has, clsname="brain")


@pytest.fixture(scope="module", params=["mvfa", "mlalp"])
def trained(request, tiny_backbone):
    method = create_method(request.param, tiny_backbone, {"coreset": None})
    support = _support()
    method.setup([support], "brain", validation=support, target=support)
    ds = method.train_dataset([support], seed=0)
    opt = method.configure_optimizer()
    batch = collate([ds[i] for i in range(0, len(ds), 5)])
    loss = method.training_step(batch)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()
    method.prepare()
    return method


def test_eleven_views_per_shot(tiny_backbone):
    method = create_method("mvfa", tiny_backbone, {})
    ds = method.train_dataset([_support()], seed=0)
    assert len(ds) == 4 * 11
    assert {ds[i]["dataset"] for i in range(len(ds))} == {0}


def test_only_adapters_and_prompts_train(trained):
    names = {n.split(".")[0] for n, p in trained.named_parameters() if p.requires_grad}
    expected = {"adapters", "prompts"} if trained.name == "mlalp" else {"adapters"}
    assert names == expected
    assert not any(p.requires_grad for p in trained.backbone.parameters())


def test_forward_fuses_text_and_memory_bank(trained):
    images = torch.from_numpy(np.stack(_support().images).transpose(0, 3, 1, 2))
    with torch.no_grad():
        out = trained(images)
        raw = trained.raw_scores(images)
    assert out.anomaly_map.shape == (4, 112, 112) and out.image_score.shape == (4,)
    assert BANK_MAP in raw and TEXT_MAP in raw
    torch.testing.assert_close(out.image_score, out.anomaly_map.flatten(1).amax(1))


def test_bank_map_is_zero_on_the_support_normals(trained):
    # the unaugmented view of each normal shot is in the bank: its distance is exactly 0
    normals = torch.from_numpy(np.stack(_support().normals).transpose(0, 3, 1, 2))
    with torch.no_grad():
        raw = trained.raw_scores(normals)
    assert float(raw[BANK_MAP].abs().max()) < 1e-4


def test_checkpoint_keeps_memory_bank(trained, tmp_path):
    from anomed.config import RunConfig
    from anomed.engine.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint

    cfg = RunConfig(method=trained.name)
    cfg.backbone.image_size = 112
    save_checkpoint(tmp_path, trained, CheckpointInfo(run=cfg, class_name="brain"))
    loaded, _ = load_checkpoint(tmp_path)
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).anomaly_map, trained(images).anomaly_map)


def test_classification_only_dataset_scores_from_detection(tiny_backbone):
    method = create_method("mvfa", tiny_backbone, {})
    support = _support(masks=False)
    method.setup([support], "chest", target=support)
    ds = method.train_dataset([support], seed=0)
    assert not bool(method.seg_task)
    assert not any(ds[i]["has_mask"] for i in range(len(ds)) if ds[i]["label"] == 1)
    losses = method.training_step(collate([ds[0], ds[len(ds) - 1]]))
    assert float(losses["seg"]) > 0 or float(losses["cls"]) > 0


def test_bce_on_probabilities_by_hand(tiny_backbone):
    from anomed.losses import binary_cross_entropy

    p = torch.tensor([0.8, 0.3])
    y = torch.tensor([1.0, 0.0])
    expected = -(np.log(0.8) + np.log(0.7)) / 2
    assert abs(float(binary_cross_entropy(p, y)) - expected) < 1e-5


def test_test_normalization_min_maxes_each_component_before_the_fusion(tiny_backbone):
    method = create_method("mvfa", tiny_backbone, {"normalization": "test"})
    text = np.array([[[0.0, 4.0]], [[2.0, 2.0]]], np.float32)  # (N, 1, 2) maps, range 0-4
    bank = np.array([[[0.5, 0.0]], [[0.25, 0.25]]], np.float32)  # range 0-0.5
    parts = {"text_map": text, "bank_map": bank, "text_det": np.zeros(2), "bank_det": np.zeros(2)}
    maps, scores = method.finalize_test(text, np.zeros(2), parts)
    expected = 0.5 * text / 4 + 0.5 * bank / 0.5
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    np.testing.assert_allclose(scores, expected.reshape(2, -1).max(1), atol=1e-6)
    fused_first = 0.5 * text + 0.5 * bank  # the old, wrong order
    fused_first = (fused_first - fused_first.min()) / (fused_first.max() - fused_first.min())
    assert np.abs(fused_first - maps).max() > 0.1


def test_seg_adapters_stay_frozen_on_image_level_datasets_as_the_reference(tiny_backbone):
    method = create_method("mvfa", tiny_backbone, {}, "reference")
    support = _support(masks=False)
    method.setup([support], "chest", target=support)
    frozen = {id(p) for p in method.adapters.seg_branches.parameters()}
    stepped = {id(p) for g in method.configure_optimizer().param_groups for p in g["params"]}
    assert stepped and not (stepped & frozen)
    trained = create_method("mvfa", tiny_backbone, {"seg_adapters_without_masks": "train"})
    trained.setup([support], "chest", target=support)
    seg = {id(p) for p in trained.adapters.seg_branches.parameters()}
    stepped = {id(p) for g in trained.configure_optimizer().param_groups for p in g["params"]}
    assert seg <= stepped
