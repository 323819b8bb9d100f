"""Timing and peak memory of one step, shared by both speed paths: the PyTorch rows of
`engine.speed` and the ONNX rows of `export.bench` (so both are timed the same way).

Median of `iters` runs after one warm-up; on GPU every timing is bracketed by synchronisation.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Median seconds of `fn` over `iters` runs after one warm-up."""
    fn()
    times = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _rss_mib() -> float:
    """Current resident set (Linux); elsewhere the process's peak so far (getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (Linux), bytes (macOS)
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


class PeakMemory:
    """Peak memory inside a `with` block: GPU allocations on cuda, else the process's resident
    set, sampled every few milliseconds by a thread (`peak_mib` after the block)."""

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval, self.peak_mib = device, interval, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mib = max(self.peak_mib, _rss_mib())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_mib = _rss_mib()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mib = max(self.peak_mib, _rss_mib())


def timed_batch(step: Callable[[], object], device: torch.device, batch: int, iters: int) -> dict:
    """One speed row: median seconds of `step` on a batch, img/s, per-image latency, peak
    memory (the device's allocations on cuda, the process's resident set on CPU)."""
    with PeakMemory(device) as memory:
        seconds = median_seconds(step, device, iters)
    return {
        "batch": batch,
        "seconds": seconds,
        "img_per_s": batch / seconds,
        "latency_ms": 1000 * seconds / batch,
        "peak_memory_mib": memory.peak_mib,
    }
