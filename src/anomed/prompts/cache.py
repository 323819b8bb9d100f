"""The one memo of a method's class text features.

Encoding prompts runs the text tower; at inference the features depend only on the prompts (and,
for learnable prompts, on their context vectors), so a method keeps them here instead of
re-encoding them for every batch. Entries are keyed on a name, the device and the autocast dtype,
and learnt entries also on the version of the parameters they come from. The owner drops the
learnt entries whenever its weights may have changed behind the versions' back (an optimizer
step: fused optimizers leave `_version` alone; a checkpoint load) by calling `invalidate`.
Fixed entries (hand-written prompt ensembles) never depend on weights and stay.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import torch
from torch import Tensor, nn


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


class TextCache:
    """Memoised class text features of one method (a plain object: not part of any state)."""

    def __init__(self) -> None:
        self._fixed: dict[tuple, Tensor] = {}
        self._learnt: dict[tuple, tuple[tuple, Tensor]] = {}

    def fixed(self, name: Hashable, device: torch.device, compute: Callable[[], Tensor]) -> Tensor:
        """Features that depend on no trainable weight (computed once per device and dtype)."""
        key = (name, torch.device(device), _autocast_dtype(torch.device(device)))
        if key not in self._fixed:
            with torch.no_grad():
                self._fixed[key] = compute()
        return self._fixed[key]

    def learnt(
        self,
        name: Hashable,
        params: Iterable[nn.Parameter],
        compute: Callable[[], Tensor],
    ) -> Tensor:
        """Features computed from `params`: a fresh graph while gradients are on (training),
        else reused until the parameters change (in-place version, storage) or `invalidate`."""
        params = list(params)
        if torch.is_grad_enabled():
            return compute()
        device = params[0].device
        key = (name, device, _autocast_dtype(device))
        version = tuple((p._version, p.data_ptr()) for p in params)
        entry = self._learnt.get(key)
        if entry is None or entry[0] != version:
            entry = self._learnt[key] = (version, compute())
        return entry[1]

    def invalidate(self) -> None:
        """Drop every learnt entry (after an optimizer step or a weight load)."""
        self._learnt.clear()

    def clear(self) -> None:
        """Drop everything (e.g. the prompts themselves were rebuilt)."""
        self._fixed.clear()
        self._learnt.clear()
