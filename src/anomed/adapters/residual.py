"""Multi-level residual adapters (MVFA, CVPR 2024): adapters *inside* the vision tower.

After each tapped block, a classification branch and a segmentation branch each map the tokens
into the joint space (the features compared with text) and back; the residual stream continues as
x <- gamma * x + alpha * back_cls + beta * back_seg, so later blocks see adapted features.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class AdapterBranch(nn.Module):
    """Linear(C -> D, no bias) + LeakyReLU gives the joint-space token; Linear(D -> C) maps back."""

    def __init__(self, width: int, joint_dim: int) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Linear(width, joint_dim, bias=False), nn.LeakyReLU())
        self.up = nn.Sequential(nn.Linear(joint_dim, width, bias=False), nn.LeakyReLU())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, L, C) -> (joint-space tokens (B, L, D), mapped back (B, L, C))."""
        mid = self.down(x)
        return mid, self.up(mid)


class ResidualAdapters(nn.Module):
    """One classification and one segmentation branch per tapped block, used as a block hook.

    Call `hook` through `FrozenCLIP.encode_image(..., block_hook=adapters.hook)` after `reset()`;
    the joint-space tokens of each tapped block are then in `cls_tokens` and `seg_tokens`.
    """

    def __init__(
        self,
        layers: Sequence[int],
        width: int,
        joint_dim: int,
        gamma: float = 0.8,
        alpha: float = 0.1,
        beta: float = 0.1,
    ) -> None:
        super().__init__()
        self.layer_ids = list(layers)
        self.cls_branches = nn.ModuleList(AdapterBranch(width, joint_dim) for _ in layers)
        self.seg_branches = nn.ModuleList(AdapterBranch(width, joint_dim) for _ in layers)
        self.gamma, self.alpha, self.beta = gamma, alpha, beta
        self.cls_tokens: list[Tensor] = []
        self.seg_tokens: list[Tensor] = []

    def reset(self) -> None:
        self.cls_tokens, self.seg_tokens = [], []

    def hook(self, block: int, x: Tensor) -> Tensor:
        """Residual-stream rewrite after 1-based `block`; untapped blocks pass unchanged."""
        if block not in self.layer_ids:
            return x
        i = self.layer_ids.index(block)
        cls_mid, cls_back = self.cls_branches[i](x)
        seg_mid, seg_back = self.seg_branches[i](x)
        self.cls_tokens.append(cls_mid)
        self.seg_tokens.append(seg_mid)
        return self.gamma * x + self.alpha * cls_back + self.beta * seg_back
