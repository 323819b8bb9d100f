"""Side linear adapters: one per tapped layer, patch tokens -> the joint text space."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class LinearAdapters(nn.Module):
    """A Linear(C -> D) per tapped layer; the backbone's forward is untouched (a side branch)."""

    def __init__(self, n_layers: int, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(in_dim, out_dim, bias=bias) for _ in range(n_layers))

    def forward(self, tokens: Sequence[Tensor]) -> list[Tensor]:
        """tokens: per layer (B, N, C) -> per layer (B, N, D)."""
        if len(tokens) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} tapped layers, got {len(tokens)}")
        return [adapter(x) for adapter, x in zip(self.layers, tokens, strict=True)]
