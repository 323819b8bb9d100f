"""Device choice and mixed precision, shared by training and inference."""

from __future__ import annotations

import contextlib
import os
from typing import Annotated

import torch

from anomed.config import DEVICE, coerce
from anomed.errors import AnomedError


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; otherwise the named device (checked)."""
    coerce(Annotated[str, DEVICE], name, "--device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AnomedError(f"--device {name}: no MPS device here. Fix: use --device cpu or auto.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AnomedError(f"--device {name}: no CUDA device here. Fix: use --device cpu or auto.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise AnomedError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            "numbered from 0. Fix: pick one of them, or --device auto."
        )
    return device


CPU_BF16_ENV = "ANOMED_CPU_BF16"  # "1": autocast on CPU too (checks bf16 numerics sans GPU)


def uses_bf16(device: torch.device, amp: bool) -> bool:
    """Whether `autocast(device, amp)` computes in bf16."""
    on_cpu = device.type == "cpu" and os.environ.get(CPU_BF16_ENV) == "1"
    return amp and (device.type == "cuda" or on_cpu)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (the fast path); a no-op on CPU, where bf16 rarely pays, unless
    ANOMED_CPU_BF16=1 asks for the GPU's number format there (benchmarks/fastpath_table.py)."""
    if uses_bf16(device, enabled):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }
