"""Losses for anomaly segmentation (on probabilities) and image-text matching (on logits).

Everything is computed in float32 whatever the input dtype, so the losses are safe under autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def _class_weights(alpha: float | Sequence[float], num_classes: int, like: Tensor) -> Tensor:
    """Per-class weights: a float a weighs class 1 (anomaly) by a and the others by 1 - a."""
    if isinstance(alpha, int | float):
        weights = torch.full((num_classes,), 1.0 - float(alpha))
        weights[1] = float(alpha)
    else:
        weights = torch.as_tensor(alpha, dtype=torch.float32)
        if weights.shape != (num_classes,):
            raise ValueError(f"alpha needs {num_classes} class weights, got {tuple(weights.shape)}")
    return weights.to(device=like.device, dtype=torch.float32)


FocalFloor = Literal["clamp", "smooth"]


def focal_loss(
    probs: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    eps: float = 1e-6,
    floor: FocalFloor = "clamp",
    smooth: float = 1e-5,
) -> Tensor:
    """Focal loss -alpha_t (1 - p_t)^gamma log p_t on class probabilities, mean over pixels.

    probs: (B, C, H, W) probabilities that sum to 1 over C (a softmax, as in the MVFA / MediCLIP
    reference); target: (B, H, W) class indices. alpha: None (no weighting), a float a (class 1
    weighs a, the others 1 - a, as in RetinaNet) or C per-class weights. With gamma = 0 and no
    alpha this is the negative log-likelihood.

    How log p_t stays finite (`floor`): "clamp" clamps p_t to [eps, 1] (no gradient below eps);
    "smooth" is the references' label smoothing, p_t <- sum_c q_c p_c + smooth with the one-hot
    q clamped to [smooth / (C - 1), 1 - smooth] (each pixel's loss is capped near -log smooth and
    keeps a gradient).
    """
    if probs.dim() != target.dim() + 1 or probs.shape[2:] != target.shape[1:]:
        raise ValueError(f"probs {tuple(probs.shape)} must be target {tuple(target.shape)} + C")
    target = target.long()
    probs = probs.float()
    if floor == "smooth":
        n = probs.shape[1]
        onehot = F.one_hot(target, n).movedim(-1, 1).float()  # (B, C, H, W)
        onehot = onehot.clamp(smooth / (n - 1), 1.0 - smooth)
        p_t = (onehot * probs).sum(1) + smooth  # (B, H, W)
    elif floor == "clamp":
        p_t = probs.gather(1, target.unsqueeze(1)).squeeze(1).clamp(eps, 1.0)  # (B, H, W)
    else:
        raise ValueError(f"unknown focal floor {floor!r}")
    loss = -((1.0 - p_t) ** gamma) * p_t.log()
    if alpha is not None:
        loss = loss * _class_weights(alpha, probs.shape[1], probs)[target]
    return loss.mean()


def dice_loss(probs: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s), computed per image, then averaged.

    probs: (B, H, W) anomaly probabilities; target: (B, H, W) in {0, 1}. Per image (as in the MVFA
    reference) so that each image weighs the same whatever its lesion size; on a normal image
    (empty target) the loss is sum(p) / (sum(p) + s), which pushes its map towards zero.
    """
    if probs.shape != target.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and target {tuple(target.shape)} differ")
    p, t = probs.float().flatten(1), target.float().flatten(1)  # (B, H*W)
    dice = (2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)  # (B,)
    return 1.0 - dice.mean()


def binary_cross_entropy(probs: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean binary cross-entropy of probabilities in [0, 1], clamped to [eps, 1 - eps].

    The correct form for probabilities (MVFA's reference passes probabilities to BCE-with-logits,
    which applies a second sigmoid). Written out rather than `F.binary_cross_entropy`, which
    autocast refuses.
    """
    p, t = probs.float().clamp(eps, 1.0 - eps), target.float()
    return -(t * p.log() + (1.0 - t) * torch.log1p(-p)).mean()


def bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of raw logits (numerically stable sigmoid + BCE)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def sigmoid_image_text_loss(
    logits: Tensor,
    labels: Tensor,
    temperature: float | Tensor = 1.0,
    bias: float | Tensor = 0.0,
) -> Tensor:
    """SigLIP-style loss -mean log sigmoid(y (logit * temperature + bias)), y = 2 label - 1.

    logits: (B,) image-vs-anomaly-text similarities, or (B, T) for T texts that share the image's
    label; labels: (B,) in {0, 1} (1 = anomalous), or the shape of logits. temperature and bias
    may be learnable tensors (SigLIP learns t = exp(t') and b).
    """
    y = 2.0 * labels.float() - 1.0
    if logits.dim() == y.dim() + 1:
        y = y.unsqueeze(-1)  # (B, 1): one label for all T texts
    try:
        fits = torch.broadcast_shapes(y.shape, logits.shape) == logits.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"labels {tuple(labels.shape)} do not fit logits {tuple(logits.shape)}")
    z = logits.float() * temperature + bias
    return -F.logsigmoid(y * z).mean()


def sigmoid_patch_loss(
    logits: Tensor,
    targets: Tensor,
    pool: Callable[[Tensor], Tensor] | None = None,
    channels: Literal["sum", "mean"] = "sum",
    temperature: float | Tensor = 1.0,
    bias: float | Tensor = 0.0,
) -> Tensor:
    """The MadCLIP reference's image-level sigmoid loss, computed per patch.

    logits: (B, N, C) patch logits; targets: (B, C) in {0, 1} (1: the image matches that
    channel's text). Per patch log sigmoid(y z), y = 2 t - 1 and z = logit * temperature + bias;
    pooled over the patches (`pool`, default the mean: (B, N, C) -> (B, C)); summed (the
    reference) or averaged over the C channels; the negative mean over the batch.
    """
    y = 2.0 * targets.float() - 1.0  # (B, C)
    z = logits.float() * temperature + bias
    per_patch = F.logsigmoid(y.unsqueeze(1) * z)  # (B, N, C)
    pooled = per_patch.mean(dim=1) if pool is None else pool(per_patch)  # (B, C)
    reduced = pooled.sum(-1) if channels == "sum" else pooled.mean(-1)
    return -reduced.mean()
