"""A memory bank of normal patch features and nearest-neighbour scoring (MVFA, PatchCore).

Per tapped layer the bank holds normal patch features (M_l, D_l); a query patch scores its
distance to the nearest bank feature: `"cosine"` gives min (1 - cos) in [0, 2] (MVFA's few-shot
map), `"euclidean"` the min L2 distance (PatchCore). The search is chunked over queries and bank
alike, so no matrix larger than `chunk x bank_chunk` is ever built: 16 shots x 11 views x 289
patches (50,864 features a layer) fits in CPU memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

DISTANCES = ("cosine", "euclidean")


def _prepare(x: Tensor, distance: str) -> Tensor:
    """float32 copy of (M, D) features in the space the distance is taken in."""
    x = x.detach().float()
    return F.normalize(x, dim=-1) if distance == "cosine" else x


def _pairwise(q: Tensor, b: Tensor, distance: str) -> Tensor:
    """Prepared q (Q, D), b (M, D) -> distances (Q, M)."""
    if distance == "cosine":
        return (1.0 - q @ b.t()).clamp_(0.0, 2.0)
    return torch.cdist(q, b)


@torch.no_grad()
def nearest_distance(
    query: Tensor, bank: Tensor, distance: str = "cosine", chunk: int = 4096, bank_chunk: int = 4096
) -> Tensor:
    """query (Q, D), bank (M, D) -> distance of each query to its nearest bank row (Q,), float32.

    `bank` must already be prepared (float32, unit rows for cosine), as `MemoryBank` keeps it;
    the query is prepared here, one chunk at a time."""
    out = torch.empty(query.shape[0], device=query.device, dtype=torch.float32)
    bank = bank.to(query.device)
    for i in range(0, query.shape[0], chunk):
        q = _prepare(query[i : i + chunk], distance)  # (c, D)
        best = torch.full((q.shape[0],), math.inf, device=q.device)
        for j in range(0, bank.shape[0], bank_chunk):
            d = _pairwise(q, bank[j : j + bank_chunk], distance)  # (c, c_bank)
            best = torch.minimum(best, d.amin(dim=1))
        out[i : i + chunk] = best
    return out


@torch.no_grad()
def greedy_coreset(features: Tensor, fraction: float, seed: int = 0, dim: int = 128) -> Tensor:
    """Sorted indices of an approximate greedy k-center subset of `fraction` of the rows
    (PatchCore): farthest-point selection on a seeded Gaussian projection to `dim` features."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"coreset fraction must be in (0, 1], got {fraction}")
    n, d = features.shape
    keep = max(1, round(fraction * n))
    if keep >= n:
        return torch.arange(n, device=features.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = features.detach().float()
    if d > dim:
        proj = torch.randn(d, dim, generator=gen) / math.sqrt(dim)
        x = x @ proj.to(x.device)  # (n, dim)
    sq = (x * x).sum(1)  # (n,)
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    dist = (sq - 2 * x @ x[chosen[0]] + sq[chosen[0]]).clamp_(min=0)  # squared, to the subset
    for _ in range(keep - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, (sq - 2 * x @ x[nxt] + sq[nxt]).clamp_(min=0))
    return torch.tensor(sorted(chosen), device=features.device)


@dataclass(eq=False)
class MemoryBank:
    """Per-layer banks of normal features (M_l, D_l) and the distance to score queries with.

    The banks are kept as searched: float32, and rows scaled to unit length for cosine (which
    leaves 1 - cos unchanged), so scoring never copies the whole bank."""

    banks: list[Tensor]
    distance: str = "cosine"  # "cosine": min (1 - cos), MVFA; "euclidean": min L2, PatchCore
    _moved: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; use one of {DISTANCES}")
        for i, b in enumerate(self.banks):
            if b.ndim != 2 or b.shape[0] == 0:
                raise ValueError(f"bank layer {i} must be a non-empty (M, D) tensor, got {b.shape}")
        self.banks = [_prepare(b, self.distance) for b in self.banks]

    @classmethod
    def build(
        cls,
        features: Sequence[Tensor],
        coreset: float | None = None,
        seed: int = 0,
        distance: str = "cosine",
    ) -> MemoryBank:
        """features: per layer (M_l, D_l). `coreset` keeps that fraction of each layer's rows by
        greedy k-center, in the space the distance is taken in; None keeps all."""
        bank = cls(list(features), distance)
        if coreset is not None:
            bank.banks = [b[greedy_coreset(b, coreset, seed).to(b.device)] for b in bank.banks]
        return bank

    def _bank(self, layer: int, device: torch.device) -> Tensor:
        bank = self.banks[layer]
        if bank.device == device:
            return bank
        key = (layer, str(device))
        if key not in self._moved:  # move once, not on every batch
            self._moved[key] = bank.to(device)
        return self._moved[key]

    def score(
        self, query: Sequence[Tensor], chunk: int = 4096, bank_chunk: int = 4096
    ) -> list[Tensor]:
        """query: per layer (B, N, D) -> per layer nearest-normal distance (B, N), float32, on the
        query's device. No gradients flow through the search."""
        if len(query) != len(self.banks):
            raise ValueError(f"{len(query)} query layers for a bank of {len(self.banks)} layers")
        out = []
        for layer, q in enumerate(query):
            bank = self._bank(layer, q.device)  # (M, D)
            if q.shape[-1] != bank.shape[1]:
                raise ValueError(
                    f"layer {layer}: query dim {q.shape[-1]} != bank dim {bank.shape[1]}"
                )
            flat = q.reshape(-1, q.shape[-1])  # (B * N, D)
            d = nearest_distance(flat, bank, self.distance, chunk, bank_chunk)
            out.append(d.reshape(q.shape[:-1]))
        return out

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat CPU tensors for a safetensors checkpoint: `layer{i}` and `distance` (an index)."""
        state = {f"layer{i}": b.detach().contiguous().cpu() for i, b in enumerate(self.banks)}
        state["distance"] = torch.tensor(DISTANCES.index(self.distance))
        return state

    @classmethod
    def from_tensors(cls, state: dict[str, Tensor]) -> MemoryBank:
        """Inverse of `to_tensors` (also reads the older `metric` key)."""
        n = sum(k.startswith("layer") for k in state)
        missing = [f"layer{i}" for i in range(n) if f"layer{i}" not in state]
        if missing:
            raise ValueError(f"memory bank tensors lack {missing}; found {sorted(state)}")
        code = state.get("distance", state.get("metric", torch.tensor(0)))
        return cls([state[f"layer{i}"] for i in range(n)], DISTANCES[int(code)])


def banks_state(banks: dict[str, MemoryBank | None]) -> dict[str, Tensor]:
    """Flatten named banks into checkpoint tensors ("<name>.<key>")."""
    state: dict[str, Tensor] = {}
    for name, bank in banks.items():
        if bank is not None:
            state.update({f"{name}.{k}": v for k, v in bank.to_tensors().items()})
    return state


def split_banks_state(
    state: dict[str, Tensor], names: list[str]
) -> tuple[dict[str, MemoryBank | None], dict[str, Tensor]]:
    """Inverse of `banks_state`: (the named banks or None, the remaining entries)."""
    banks: dict[str, MemoryBank | None] = {}
    rest = dict(state)
    for name in names:
        part = {k[len(name) + 1 :]: rest.pop(k) for k in list(rest) if k.startswith(name + ".")}
        banks[name] = MemoryBank.from_tensors(part) if part else None
    return banks, rest
