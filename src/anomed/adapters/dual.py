"""Dual-branch side adapters (MadCLIP, MICCAI 2025): a normal and an abnormal adapter per layer.

Each adapter: a shared Linear(C -> C, no bias) + LeakyReLU trunk, per-token standardisation over
channels (no affine), then a detection head and a segmentation head, Linear(C -> D, no bias) +
LeakyReLU each. The CLIP forward is not modified (side branch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _head(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.LeakyReLU())


class BranchAdapter(nn.Module):
    """One branch of one layer: tokens (B, N, C) -> (detection, segmentation), each (B, N, D)."""

    def __init__(self, width: int, joint_dim: int, separate_heads: bool = True) -> None:
        super().__init__()
        self.width = width  # a Python int: a traced graph keeps it constant
        self.trunk = _head(width, width)
        self.det = _head(width, joint_dim)
        self.seg = _head(width, joint_dim) if separate_heads else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        h = F.layer_norm(h, (self.width,))  # per-token standardisation, no affine
        det = self.det(h)
        return det, (self.seg(h) if self.seg is not None else det)


class DualBranchAdapters(nn.Module):
    """Per tapped layer a normal and an abnormal BranchAdapter (one shared one if `dual=False`)."""

    def __init__(
        self,
        n_layers: int,
        width: int,
        joint_dim: int,
        dual: bool = True,
        separate_heads: bool = True,
    ) -> None:
        super().__init__()
        make = lambda: nn.ModuleList(  # noqa: E731
            BranchAdapter(width, joint_dim, separate_heads) for _ in range(n_layers)
        )
        self.normal = make()
        self.abnormal = make() if dual else None  # None: both roles use `normal` (ablation)

    def forward(self, tokens: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Per layer {"det_n", "seg_n", "det_a", "seg_a"}: joint-space tokens (B, N, D)."""
        abnormal = self.abnormal if self.abnormal is not None else self.normal
        out = []
        for x, n, a in zip(tokens, self.normal, abnormal, strict=True):
            det_n, seg_n = n(x)
            det_a, seg_a = a(x) if a is not n else (det_n, seg_n)
            out.append({"det_n": det_n, "seg_n": seg_n, "det_a": det_a, "seg_a": seg_a})
        return out
