import numpy as np
import pytest
import torch

from anomed.data.datasets import SupportSet, collate
from anomed.losses import sigmoid_image_text_loss
from anomed.methods import create_method


def _support(size=112):
    rng = np.random.default_rng(0)
    images = [
        np.clip(rng.normal(0.4, 0.1, (size, size, 3)), 0, 1).astype(np.float32) for _ in range(4)
    ]
    masks = [np.zeros((size, size), bool) for _ in range(4)]
    for m in masks[2:]:
        m[20:50, 30:60] = True
    return SupportSet(images, [0, 0, 1, 1], masks, [True] * 4, clsname="brain")


def _batch(method):
    ds = method.train_dataset([_support()], seed=0)
    assert len(ds) == 4 * 16  # 16 views per shot
    return collate([ds[i] for i in (0, 17, 33, 50)])


def test_dual_contrast_by_hand(tiny_backbone):
    method = create_method("madclip", tiny_backbone, {})
    f_n = torch.tensor([[[1.0, 0.0]]])
    f_a = torch.tensor([[[0.6, 0.8]]])
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # t_n, t_a
    logits = method.dual_contrast(f_n, f_a, text)
    torch.testing.assert_close(logits, torch.tensor([[[1.0 - 0.0, 0.8 - 0.6]]]))
    method.cfg.subtraction = False
    torch.testing.assert_close(method.dual_contrast(f_n, f_a, text), torch.tensor([[[1.0, 0.8]]]))


def test_sigmoid_loss_labels_by_hand(tiny_backbone):
    pooled = {"image_loss_input": "mean_logit", "image_loss_channels": "mean"}
    method = create_method("madclip", tiny_backbone, pooled)
    logits = torch.tensor([[2.0, -1.0]])  # [normal, abnormal] of one abnormal image (y = +1)
    loss = method.image_loss(logits, torch.tensor([1]))
    expected = -(np.log(1 / (1 + np.exp(2.0))) + np.log(1 / (1 + np.exp(1.0)))) / 2
    assert abs(float(loss) - expected) < 1e-5
    # the default (the reference's): per patch, summed over the two channels
    reference = create_method("madclip", tiny_backbone, {}).image_loss(logits, torch.tensor([1]))
    assert abs(float(reference) - 2 * expected) < 1e-5
    torch.testing.assert_close(loss, sigmoid_image_text_loss(logits, torch.tensor([[0.0, 1.0]])))


def test_branches_get_gradients_only_from_their_own_terms(tiny_backbone):
    method = create_method("madclip", tiny_backbone, {"layers": [24]})
    text = method.class_text("brain").expand(2, -1, -1)
    patches = method.frozen_features(torch.rand(2, 3, 112, 112))["patches"]
    layer = method.layer_logits(patches, text)[0]
    layer["det"][..., 0].sum().backward()  # S_n of the detection head only
    normal, abnormal = method.adapters.normal[0], method.adapters.abnormal[0]
    assert normal.det[0].weight.grad.abs().sum() > 0
    assert abnormal.det[0].weight.grad is None or abnormal.det[0].weight.grad.abs().sum() == 0
    assert normal.seg[0].weight.grad is None  # the segmentation head is not in S_n(det)


@pytest.mark.parametrize(
    "switch",
    [
        {},
        {"learnable_prompts": False},
        {"objective": "medical image"},
        {"dual_adapters": False},
        {"subtraction": False},
        {"image_loss": "softmax"},
        {"separate_heads": False},
        {"image_logit": "max"},
        {"image_logit": "mix"},
        {"learn_temperature": True},
    ],
)
def test_every_ablation_switch_trains_and_scores(tiny_backbone, switch):
    method = create_method("madclip", tiny_backbone, {"layers": [12, 24], **switch})
    method.class_name = "brain"
    batch = _batch(method)
    losses = method.training_step(batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and float(losses["seg"]) > 0
    trained = [n for n, p in method.named_parameters() if p.grad is not None]
    assert trained and not any(n.startswith("backbone.") for n in trained)
    method.setup([_support()], "brain", validation=_support())
    method.prepare()
    with torch.no_grad():
        out = method(batch["image"])
    assert out.anomaly_map.shape == (4, 112, 112) and torch.isfinite(out.image_score).all()


def test_shared_adapter_has_one_set_of_weights(tiny_backbone):
    method = create_method("madclip", tiny_backbone, {"dual_adapters": False})
    assert not any(k.startswith("adapters.abnormal") for k in method.trainable_state_dict())
