"""Device choice and mixed precision, shared by training and inference."""

from __future__ import annotations

import contextlib

import torch

from anomed.errors import AnomedError


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AnomedError(f"--device {name}: no CUDA device here. Fix: use --device cpu or auto.")
    return device


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (the fast path); a no-op on CPU, where bf16 is slow."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }
