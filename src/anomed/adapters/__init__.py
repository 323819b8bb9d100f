"""Adapters: trainable modules beside or inside the frozen vision tower."""

from anomed.adapters.linear import LinearAdapters

__all__ = ["LinearAdapters"]
