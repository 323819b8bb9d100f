"""Feature caching for side-adapter methods: run the frozen backbone once per training item.

A side-adapter method (MediCLIP, MadCLIP, CondPrompt) reads only frozen features, so every epoch
of a k-shot schedule would recompute the same tokens. The cache computes them once, on the
training device, for a pool of items: the fixed augmented views of labelled shots (exactly what
the uncached loop sees), or `variants` epochs of freshly synthesized anomalies, which later epochs
cycle through. Batches are drawn in the order a shuffling DataLoader with the same generator would
draw them, so a cache holding every epoch reproduces the uncached run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from anomed.config import TrainConfig
from anomed.data.datasets import collate
from anomed.engine.device import autocast, uses_bf16
from anomed.methods.base import AnomalyMethod


@dataclass
class FeatureCache:
    """Per variant (one epoch's items), every tensor field with the items as first dim."""

    variants: list[dict[str, Tensor]]
    seconds: float = 0.0  # time spent building (synthesis, decoding and backbone passes)

    def __len__(self) -> int:
        return next(iter(self.variants[0].values())).shape[0]

    @property
    def nbytes(self) -> int:
        return _nbytes(v for var in self.variants for v in var.values())

    def batches(
        self, epoch: int, batch_size: int, generator: torch.Generator
    ) -> Iterator[dict[str, Tensor]]:
        """Shuffled batches of the variant for `epoch` (1-based), as DataLoader would order them."""
        data = self.variants[(epoch - 1) % len(self.variants)]
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # DataLoader's base seed
        order = torch.randperm(len(self), generator=generator)
        device = next(iter(data.values())).device  # every field lives on the training device
        for idx in order.split(batch_size):
            idx = idx.to(device)
            yield {k: v[idx] for k, v in data.items()}
        torch.randperm(len(self), generator=generator)  # RandomSampler's draw for the remainder


def _features(
    method: AnomalyMethod, images: Tensor, device: torch.device, amp: bool
) -> dict[str, Tensor]:
    with torch.no_grad(), autocast(device, amp):
        return method.frozen_features(images.to(device, non_blocking=True))


def _encode_pass(
    method: AnomalyMethod,
    dataset: Dataset,
    device: torch.device,
    cfg: TrainConfig,
    budget: float,
) -> dict[str, Tensor] | None:
    """One pass over `dataset`: frozen features + the other tensor fields, on `device`; None as
    soon as the first batch shows that the pass would need more than `budget` bytes."""
    storage = storage_dtype(device, cfg.amp)
    loader = DataLoader(
        dataset,
        batch_size=cfg.cache_batch_size,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        generator=torch.Generator(),  # leave the global random stream as an uncached run does
    )
    parts: dict[str, list[Tensor]] = {}
    for i, batch in enumerate(loader):
        images = batch.pop("image")
        for key, value in _features(method, images, device, cfg.amp).items():
            value = value.to(storage) if storage and value.is_floating_point() else value
            parts.setdefault(key, []).append(value)
        for key, value in batch.items():
            if torch.is_tensor(value):
                parts.setdefault(key, []).append(value.to(device))
        if i == 0:  # the whole pass estimated from its first batch, before the device fills
            estimate = _nbytes(ts[0] for ts in parts.values()) * len(dataset) / len(images)
            if estimate > budget:
                return None
    return {k: torch.cat(v) for k, v in parts.items()}


def _nbytes(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def cached_validation(
    method: AnomalyMethod, items: list[dict], batch_size: int, device: torch.device, amp: bool
) -> list[dict]:
    """Validation items as batches whose images are replaced by frozen features, computed once
    (labels and masks stay on the CPU, where evaluation reads them)."""
    batches = []
    for i in range(0, len(items), batch_size):
        batch = collate(items[i : i + batch_size])
        images = batch.pop("image")
        batches.append({**batch, **_features(method, images, device, amp)})
    return batches


def storage_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 where training autocasts to bf16 anyway (adapters read bf16 inputs); else as is."""
    return torch.bfloat16 if uses_bf16(device, amp) else None


def build_feature_cache(
    method: AnomalyMethod,
    train_set: Dataset,
    epochs: int,
    device: torch.device,
    cfg: TrainConfig,
    log: Callable[[str], None],
    progress: bool = False,
) -> FeatureCache | None:
    """Cache the frozen features of the training items, or None when caching does not apply
    (method not cacheable, caching off, or one epoch's features over the memory budget)."""
    if not (cfg.cache_features and method.cacheable and epochs > 0 and len(train_set) > 0):
        return None
    start = time.perf_counter()
    fresh = hasattr(train_set, "set_epoch")  # a new synthesis each epoch
    wanted = min(epochs, cfg.cache_variants) if fresh else 1
    budget = cfg.cache_budget_gib * 2**30
    variants: list[dict[str, Tensor]] = []
    bar = tqdm(total=wanted, desc="feature cache", unit="epoch", disable=not progress, delay=2)
    while len(variants) < wanted:
        if fresh:
            train_set.set_epoch(len(variants) + 1)
        variant = _encode_pass(method, train_set, device, cfg, budget)
        if variant is None:
            log(
                f"feature cache: one epoch's features would exceed train.cache_budget_gib="
                f"{cfg.cache_budget_gib}; training without the cache"
            )
            return None
        variants.append(variant)
        per_variant = _nbytes(variant.values())
        wanted = min(wanted, max(1, math.floor(budget / per_variant)))
        bar.total = wanted
        bar.update(1)
    bar.close()
    cache = FeatureCache(variants, time.perf_counter() - start)
    cycle = f", cycled over {epochs} epochs" if fresh and len(variants) < epochs else ""
    log(
        f"feature cache: {len(cache)} items x {len(variants)} variant(s){cycle}, "
        f"{cache.nbytes / 2**20:.0f} MiB, built in {cache.seconds:.1f} s"
    )
    return cache
