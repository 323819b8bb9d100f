"""A memory bank of normal patch features and nearest-neighbour scoring (MVFA, PatchCore).

The search is chunked over queries and bank alike, so no (queries x bank) matrix larger than
`chunk x bank_chunk` is ever built: k = 16 shots x 11 views x 289 patches fits in CPU memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _min_distance(query: Tensor, bank: Tensor, metric: str, chunk: int, bank_chunk: int) -> Tensor:
    """query (Q, D), bank (M, D) -> min distance per query (Q,)."""
    if metric == "cosine":
        query, bank = F.normalize(query, dim=-1), F.normalize(bank, dim=-1)
    out = torch.empty(query.shape[0], device=query.device, dtype=torch.float32)
    for i in range(0, query.shape[0], chunk):
        q = query[i : i + chunk].float()
        best = torch.full((q.shape[0],), float("inf"), device=q.device)
        for j in range(0, bank.shape[0], bank_chunk):
            b = bank[j : j + bank_chunk].float()
            d = 1.0 - q @ b.t() if metric == "cosine" else torch.cdist(q, b)
            best = torch.minimum(best, d.amin(dim=1))
        out[i : i + chunk] = best
    return out


def greedy_coreset(features: Tensor, fraction: float, seed: int = 0, dim: int = 128) -> Tensor:
    """Indices of an approximate greedy k-center subset (PatchCore), on a random projection."""
    n = features.shape[0]
    keep = max(1, int(round(fraction * n)))
    if keep >= n:
        return torch.arange(n, device=features.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    proj = torch.randn(features.shape[1], min(dim, features.shape[1]), generator=gen)
    reduced = features.float() @ proj.to(features.device)
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    dist = torch.cdist(reduced, reduced[chosen[-1]].unsqueeze(0)).squeeze(1)
    for _ in range(keep - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.cdist(reduced, reduced[nxt].unsqueeze(0)).squeeze(1))
    return torch.tensor(sorted(chosen), device=features.device)


@dataclass
class MemoryBank:
    """Per-layer banks of normal features (M_l, D) and a distance to score queries with."""

    banks: list[Tensor]
    metric: str = "cosine"  # "cosine": 1 - cos (MVFA); "euclidean": L2 (PatchCore)

    @classmethod
    def build(
        cls,
        features: Sequence[Tensor],
        coreset: float | None = None,
        seed: int = 0,
        metric: str = "cosine",
    ) -> MemoryBank:
        """features: per layer (M_l, D); `coreset` keeps that fraction of each layer's bank."""
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"unknown metric {metric!r}")
        banks = [f.detach() for f in features]
        if coreset is not None:
            banks = [b[greedy_coreset(b, coreset, seed)] for b in banks]
        return cls(banks, metric)

    def score(
        self, query: Sequence[Tensor], chunk: int = 4096, bank_chunk: int = 8192
    ) -> list[Tensor]:
        """query: per layer (B, N, D) -> per layer nearest-normal distance (B, N)."""
        out = []
        for q, bank in zip(query, self.banks, strict=True):
            flat = q.reshape(-1, q.shape[-1])
            d = _min_distance(flat, bank.to(flat.device), self.metric, chunk, bank_chunk)
            out.append(d.reshape(q.shape[:-1]))
        return out

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat tensors for a safetensors checkpoint."""
        state = {f"layer{i}": b.contiguous().cpu() for i, b in enumerate(self.banks)}
        state["metric"] = torch.tensor(0 if self.metric == "cosine" else 1)
        return state

    @classmethod
    def from_tensors(cls, state: dict[str, Tensor]) -> MemoryBank:
        n = sum(k.startswith("layer") for k in state)
        metric = "cosine" if int(state.get("metric", torch.tensor(0))) == 0 else "euclidean"
        return cls([state[f"layer{i}"] for i in range(n)], metric)
