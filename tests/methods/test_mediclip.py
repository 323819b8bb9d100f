import numpy as np
import pytest
import torch

from anomed.data.datasets import SupportSet
from anomed.methods import METHODS, create_method


def _method(backbone, **args):
    return create_method("mediclip", backbone, {"n_ctx": 4, **args})


def test_registered():
    assert "mediclip" in METHODS


def test_output_is_typed_with_map_at_input_size(tiny_backbone):
    method = _method(tiny_backbone).eval()
    with torch.no_grad():
        out = method(torch.rand(2, 3, 112, 112))
    assert out.anomaly_map.shape == (2, 112, 112)
    assert out.image_score.shape == (2,)
    torch.testing.assert_close(out.image_score, out.anomaly_map.flatten(1).amax(1))
    assert float(out.anomaly_map.min()) >= 0 and float(out.anomaly_map.max()) <= 1


def test_layers_scale_to_backbone_depth(tiny_backbone):
    assert _method(tiny_backbone).layer_ids == [3, 4, 6]


def test_training_step_trains_prompts_and_adapters_only(tiny_backbone):
    method = _method(tiny_backbone).train()
    mask = torch.zeros(2, 112, 112)
    mask[:, 30:60, 30:60] = 1
    losses = method.training_step({"image": torch.rand(2, 3, 112, 112), "mask": mask})
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    with_grad = {n for n, p in method.named_parameters() if p.grad is not None}
    assert with_grad == {
        "prompts.ctx",
        *(f"adapters.layers.{i}.{w}" for i in range(3) for w in ("weight", "bias")),
    }
    assert not any(k.startswith("backbone.") for k in method.trainable_state_dict())


def test_train_dataset_synthesizes_anomalies_on_normal_shots(tiny_backbone):
    method = _method(tiny_backbone)
    rng = np.random.default_rng(0)
    shots = [
        np.clip(rng.normal(0.5, 0.1, (112, 112, 3)), 0, 1).astype(np.float32) for _ in range(3)
    ]
    support = SupportSet(shots, [0, 0, 0], [np.zeros((112, 112), bool)] * 3, [True] * 3)
    ds = method.train_dataset([support], seed=0)
    item = ds[0]
    assert len(ds) == 3 and item["image"].shape == (3, 112, 112)
    # the reference's recipe leaves a quarter of the items normal (Identity): look at several
    items = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        items += [ds[i] for i in range(3)]
    assert any(it["mask"].sum() > 0 for it in items)
    assert all(it["label"] == int(it["mask"].sum() > 0) for it in items)
    again = method.train_dataset([support], seed=0)[0]
    assert torch.equal(item["image"], again["image"])


def test_synthesis_tasks_are_checked_when_the_method_is_built():
    """`synthesis: body` with the default tasks failed on 'identity' (a medsyn task); a typo in
    `tasks` failed only inside a DataLoader worker, mid-training."""
    from anomed.errors import AnomedError
    from anomed.methods.mediclip import MediCLIPConfig, make_synthesizer

    body = make_synthesizer(MediCLIPConfig(synthesis="body"))
    assert body.identity_prob == 0.25 and len(body.tasks) == 3  # identity keeps its share
    with pytest.raises(AnomedError, match="'bogus' is not a medsyn task"):
        make_synthesizer(MediCLIPConfig(tasks=("cutpaste", "bogus")))
