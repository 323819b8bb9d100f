"""Patch-text scoring: similarity of patch features to class text features, as pixel maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MapOrder = Literal["softmax_upsample", "upsample_softmax"]


def patch_text_logits(patch_feats: Tensor, text_feats: Tensor, temperature: float) -> Tensor:
    """cos(patch, class) / temperature: patch_feats (B, N, D); text_feats (C, D) or per image
    (B, C, D) -> logits (B, N, C)."""
    patch_feats = F.normalize(patch_feats, dim=-1)
    text_feats = F.normalize(text_feats, dim=-1)
    if text_feats.dim() == 2:
        logits = patch_feats @ text_feats.t()
    else:
        logits = torch.einsum("bnd,bcd->bnc", patch_feats, text_feats)
    return logits / temperature


def patch_text_probs(patch_feats: Tensor, text_feats: Tensor, temperature: float) -> Tensor:
    """Softmax over classes of cos(patch, class) / temperature: (B, N, D) -> probs (B, N, C)."""
    return patch_text_logits(patch_feats, text_feats, temperature).softmax(dim=-1)


def sigmoid_text_probs(feats: Tensor, text_feats: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """SigLIP's own reading: per class, sigmoid(scale * cos(feature, class) + bias), each class
    on its own (they need not sum to 1): feats (B, N, D), text (C, D) -> probs (B, N, C)."""
    return torch.sigmoid(patch_text_logits(feats, text_feats, 1.0) * scale + bias)


def tokens_to_grid(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """(B, N, C) patch values -> (B, C, h, w) on the patch grid."""
    b, n, c = tokens.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return tokens.transpose(1, 2).reshape(b, c, *grid)


def upsample(maps: Tensor, size: int | tuple[int, int], align_corners: bool = False) -> Tensor:
    """(B, C, h, w) -> (B, C, H, W), bilinear. `align_corners=True` is what the MediCLIP, MVFA
    and MadCLIP references pass (the patch centres' values land on the image corners)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=align_corners)


def layer_maps(
    per_layer: Sequence[Tensor],
    grid: tuple[int, int],
    size: int | tuple[int, int],
    align_corners: bool = False,
) -> Tensor:
    """Per-layer token values [(B, N, C)] -> upsampled maps stacked (L, B, C, H, W)."""
    return torch.stack([upsample(tokens_to_grid(p, grid), size, align_corners) for p in per_layer])


def class_maps(
    per_layer_logits: Sequence[Tensor],
    grid: tuple[int, int],
    size: int | tuple[int, int],
    order: MapOrder = "softmax_upsample",
    align_corners: bool = False,
) -> Tensor:
    """Per-layer class logits [(B, N, C)] -> class probability maps (L, B, C, H, W).

    "softmax_upsample": softmax on the patch grid, then the probabilities upsampled (MLA-LP's
    Eq. 9-10); "upsample_softmax": the logits upsampled, then the softmax per pixel (the MVFA
    and MadCLIP references; MadCLIP's M = Softmax(Interpolate(S)))."""
    if order == "softmax_upsample":
        return layer_maps([x.softmax(-1) for x in per_layer_logits], grid, size, align_corners)
    if order == "upsample_softmax":
        return layer_maps(per_layer_logits, grid, size, align_corners).softmax(dim=2)
    raise ValueError(f"unknown map order {order!r}")


def gaussian_smooth(maps: Tensor, sigma: float) -> Tensor:
    """Smooth (B, H, W) maps with a Gaussian of std `sigma` pixels (0 = identity)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(4 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = maps.unsqueeze(1)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out.squeeze(1)


def window_subsets(grid: tuple[int, int], size: int, stride: int = 1) -> Tensor:
    """Patch indices (W, size*size) of every size x size window on the patch grid (row-major)."""
    h, w = grid
    idx = torch.arange(h * w).reshape(h, w)
    rows = range(0, h - size + 1, stride)
    cols = range(0, w - size + 1, stride)
    return torch.stack([idx[r : r + size, c : c + size].reshape(-1) for r in rows for c in cols])


def harmonic_aggregate(
    window_scores: Tensor, subsets: Tensor, n_patches: int, eps: float = 1e-6
) -> Tensor:
    """Per patch, the harmonic mean of the scores of the windows covering it (WinCLIP).

    window_scores: (B, W) in (0, 1]; subsets: (W, K) -> (B, N). Patches no window covers get 0.
    """
    b = window_scores.shape[0]
    inv = (1.0 / window_scores.clamp_min(eps)).repeat_interleave(subsets.shape[1], dim=1)
    index = subsets.reshape(-1).to(window_scores.device).expand(b, -1)
    total = window_scores.new_zeros(b, n_patches).scatter_add_(1, index, inv)
    count = window_scores.new_zeros(b, n_patches).scatter_add_(1, index, torch.ones_like(inv))
    return torch.where(count > 0, count / total.clamp_min(eps), torch.zeros_like(total))


def harmonic_mean(values: Sequence[Tensor], eps: float = 1e-6) -> Tensor:
    """Element-wise harmonic mean of equally shaped tensors."""
    inv = torch.stack([1.0 / v.clamp_min(eps) for v in values])
    return len(values) / inv.sum(dim=0)


def set_minmax(x: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """(x - min) / (max - min + eps) over a whole evaluated set, float32; a constant set -> 0.

    Any non-finite value makes the set's scale undefined: every output is NaN then (so the run
    reports an error), never a plausible-looking 0."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        return np.full_like(x, np.nan)
    span = float(x.max() - x.min()) + eps
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)
