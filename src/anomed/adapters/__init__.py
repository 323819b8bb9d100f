"""Adapters: trainable modules beside or inside the frozen vision tower."""

from anomed.adapters.dual import BranchAdapter, DualBranchAdapters
from anomed.adapters.linear import LinearAdapters
from anomed.adapters.residual import AdapterBranch, ResidualAdapters

__all__ = [
    "AdapterBranch",
    "BranchAdapter",
    "DualBranchAdapters",
    "LinearAdapters",
    "ResidualAdapters",
]
