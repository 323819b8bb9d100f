"""Where the time goes: operator profiles of one inference batch and a few training steps.

`anomed bench speed --profile` adds them to its report, so a missed speed target comes with the
operators that account for it (GPU kernels on cuda, CPU operators otherwise).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader

from anomed.config import TrainConfig
from anomed.data.datasets import SupportSet, collate
from anomed.engine.cache import build_feature_cache
from anomed.engine.device import autocast
from anomed.engine.train import train_epoch
from anomed.methods.base import AnomalyMethod


def _profiled(fn: Callable[[], object], device: torch.device) -> profile:
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    fn()  # warm-up: lazy initialisation and compilation stay out of the profile
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof


def top_operators(prof: profile, device: torch.device, limit: int = 15) -> list[dict]:
    """The operators with the most self time (device time on cuda), with their share."""
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    total = sum(getattr(e, key) for e in events) or 1.0
    ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:limit]
    return [
        {
            "op": e.key,
            "self_ms": getattr(e, key) / 1000,
            "share": getattr(e, key) / total,
            "calls": e.count,
        }
        for e in ranked
    ]


def profile_inference(
    method: AnomalyMethod, batch: int, device: torch.device, bf16: bool
) -> list[dict]:
    """Top operators of one end-to-end inference batch of random images."""
    size = method.backbone.image_size
    images = torch.rand(batch, 3, size, size, device=device)

    def step() -> object:
        with torch.inference_mode(), autocast(device, bf16):
            return method(images)

    return top_operators(_profiled(step, device), device)


def profile_training(
    method: AnomalyMethod,
    support: SupportSet,
    batch: int,
    device: torch.device,
    cfg: TrainConfig,
    steps: int = 5,
) -> list[dict]:
    """Top operators of `steps` optimizer steps (cached features when the method allows)."""
    method.setup([support], support.clsname, target=support)
    train_set = method.train_dataset([support], seed=0)
    cache = build_feature_cache(method, train_set, 1, device, cfg, log=lambda _: None)
    optimizer = method.configure_optimizer()
    generator = torch.Generator().manual_seed(0)
    method.train()

    def run() -> object:
        if cache is not None:
            batches = cache.batches(1, batch, generator)
        else:
            loader = DataLoader(train_set, batch_size=batch, shuffle=True, collate_fn=collate)
            batches = iter(loader)
        return train_epoch(
            method, itertools.islice(batches, steps), optimizer, None, device, cfg.amp
        )

    return top_operators(_profiled(run, device), device)
