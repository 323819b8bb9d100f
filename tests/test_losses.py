"""Losses: hand-computed values and the limits a training loop relies on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from anomed.losses import (
    bce_with_logits,
    binary_cross_entropy,
    dice_loss,
    focal_loss,
    sigmoid_image_text_loss,
)


def _probs(seed: int = 0, b: int = 2, c: int = 2, h: int = 4, w: int = 5) -> torch.Tensor:
    return torch.softmax(torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed)), 1)


def test_focal_with_gamma_zero_is_nll():
    probs = _probs(c=3)
    target = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(1))
    expected = F.nll_loss(probs.log(), target)
    assert focal_loss(probs, target, gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_focal_by_hand():
    # Pixel 1: class 1 with p = 0.8 -> (0.2)^2 * -log 0.8; pixel 2: class 0 with p = 0.6.
    probs = torch.tensor([[0.2, 0.6], [0.8, 0.4]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    terms = [0.2**2 * -math.log(0.8), 0.4**2 * -math.log(0.6)]
    assert focal_loss(probs, target).item() == pytest.approx(sum(terms) / 2, rel=1e-5)
    # alpha = 0.25 weighs class 1 by 0.25 and class 0 by 0.75.
    weighted = (0.25 * terms[0] + 0.75 * terms[1]) / 2
    assert focal_loss(probs, target, alpha=0.25).item() == pytest.approx(weighted, rel=1e-5)
    assert focal_loss(probs, target, alpha=[0.75, 0.25]).item() == pytest.approx(weighted, rel=1e-5)


def test_focal_is_finite_on_zero_probability_and_has_gradients():
    probs = torch.tensor([[1.0, 0.0]]).reshape(1, 2, 1, 1).requires_grad_()
    loss = focal_loss(probs, torch.tensor([[[1]]]))
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 10  # -log(1e-6) ~ 13.8
    assert torch.isfinite(probs.grad).all()


def test_focal_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="target"):
        focal_loss(_probs(), torch.zeros(2, 4, 4, dtype=torch.long))


def test_dice_perfect_and_disjoint():
    target = torch.zeros(2, 8, 8)
    target[:, 2:5, 2:5] = 1
    assert dice_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-7)
    disjoint = 1 - target  # 55 predicted pixels, none overlapping: 1 - 1 / (55 + 9 + 1)
    assert dice_loss(disjoint, target).item() == pytest.approx(1 - 1 / 65, rel=1e-6)


def test_dice_is_per_image_mean():
    probs = torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]])  # (2, 1, 2)
    target = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    # Image 1: (2 + 1) / (1 + 1 + 1) = 1; image 2: (0 + 1) / (1 + 0 + 1) = 0.5.
    assert dice_loss(probs, target).item() == pytest.approx(1 - (1.0 + 0.5) / 2)


def test_binary_cross_entropy_on_probabilities():
    probs, target = torch.tensor([0.9, 0.2, 0.0]), torch.tensor([1.0, 0.0, 1.0])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(1e-6)) / 3
    assert binary_cross_entropy(probs, target).item() == pytest.approx(expected, rel=1e-5)
    logits = torch.tensor([2.0, -1.0])
    assert bce_with_logits(logits, torch.tensor([1.0, 0.0])).item() == pytest.approx(
        binary_cross_entropy(torch.sigmoid(logits), torch.tensor([1.0, 0.0])).item(), rel=1e-5
    )


def _log1p_exp(x: float) -> float:
    return math.log(1 + math.exp(x))  # -log sigmoid(-x)


def test_sigmoid_image_text_loss_by_hand():
    logits, labels = torch.tensor([2.0, -1.0]), torch.tensor([1, 0])
    # y = [1, -1]: -log sigmoid(2) and -log sigmoid(1).
    expected = (_log1p_exp(-2.0) + _log1p_exp(-1.0)) / 2
    assert sigmoid_image_text_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    # temperature 2, bias -1: z = [3, -3], y * z = [3, 3].
    got = sigmoid_image_text_loss(logits, labels, temperature=2.0, bias=-1.0).item()
    assert got == pytest.approx(_log1p_exp(-3.0), rel=1e-6)


def test_sigmoid_image_text_loss_shares_labels_over_texts():
    logits = torch.tensor([[2.0, 2.0], [-1.0, -1.0]])  # (B, T) = (2, 2)
    single = sigmoid_image_text_loss(logits[:, 0], torch.tensor([1, 0]))
    assert sigmoid_image_text_loss(logits, torch.tensor([1, 0])).item() == pytest.approx(
        single.item()
    )
    with pytest.raises(ValueError, match="do not fit"):
        sigmoid_image_text_loss(logits, torch.tensor([1, 0, 1]))


def test_sigmoid_loss_learns_temperature():
    t = torch.tensor(1.0, requires_grad=True)
    sigmoid_image_text_loss(
        torch.tensor([2.0, -1.0]), torch.tensor([1, 0]), temperature=t
    ).backward()
    assert t.grad is not None and t.grad.item() < 0  # a sharper temperature lowers the loss


def test_focal_smooth_floor_is_the_references_label_smoothing():
    from anomed.losses import focal_loss

    p = torch.tensor([0.9, 0.0, 1.0]).reshape(1, 1, 3)
    probs = torch.stack([1 - p, p], dim=1)  # (1, 2, 1, 3)
    target = torch.tensor([[[1, 1, 0]]])
    s = 1e-5
    # p_t <- (1 - s) p_t + s p_other + s
    pt = torch.tensor([(1 - s) * 0.9 + s * 0.1 + s, s * 1.0 + s, s * 1.0 + s])
    expected = (-((1 - pt) ** 2) * pt.log()).mean()
    torch.testing.assert_close(focal_loss(probs, target, floor="smooth"), expected)
    assert float(focal_loss(probs, target, floor="smooth")) < float(focal_loss(probs, target))


def test_sigmoid_patch_loss_by_hand():
    from anomed.losses import sigmoid_patch_loss

    logits = torch.tensor([[[1.0, -2.0], [3.0, 0.5]]])  # (B=1, N=2, C=2)
    targets = torch.tensor([[0.0, 1.0]])  # abnormal: y = [-1, +1]
    ls = torch.nn.functional.logsigmoid
    per_channel = [
        (ls(torch.tensor(-1.0)) + ls(torch.tensor(-3.0))) / 2,
        (ls(torch.tensor(-2.0)) + ls(torch.tensor(0.5))) / 2,
    ]
    expected = -(per_channel[0] + per_channel[1])
    torch.testing.assert_close(sigmoid_patch_loss(logits, targets), expected)
    torch.testing.assert_close(sigmoid_patch_loss(logits, targets, channels="mean"), expected / 2)
