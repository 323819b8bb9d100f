"""`anomed bench speed`: throughput, latency, adaptation time and peak memory of a method.

Numbers, not assertions: the JSON it writes is what a closing note or a paper table quotes.
Decoding is excluded (inputs are random tensors already in memory); on GPU every timing is
bracketed by synchronisation.
"""

from __future__ import annotations

import json
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from anomed.backbone import BackboneConfig, load_backbone
from anomed.config import TrainConfig
from anomed.data.datasets import SupportSet
from anomed.engine.device import autocast, resolve_device
from anomed.engine.train import fit
from anomed.methods.base import METHODS, AnomalyMethod, create_method


@dataclass
class SpeedConfig:
    """What to measure."""

    method: str = "mediclip"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    device: str = "auto"
    batch_sizes: tuple[int, ...] = (1, 32, 128)
    precisions: tuple[str, ...] = ("fp32", "bf16")
    iters: int = 5  # timed iterations per setting (after one warm-up)
    k: int = 16  # shots for the adaptation timing
    epochs: int | None = None  # None: the method's default schedule
    adapt: bool = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Median seconds of `fn` over `iters` runs after one warm-up."""
    fn()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_memory_mib(device: torch.device) -> float:
    """Peak GPU memory on cuda, else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def inference_speed(method: AnomalyMethod, cfg: SpeedConfig, device: torch.device) -> list[dict]:
    """img/s per batch size and precision; batch 1 also gives the single-image latency."""
    size = method.backbone.image_size
    rows = []
    for precision in cfg.precisions:
        for batch in cfg.batch_sizes:
            images = torch.rand(batch, 3, size, size, device=device)

            def step(images: torch.Tensor = images, precision: str = precision) -> object:
                with torch.no_grad(), autocast(device, precision == "bf16"):
                    return method(images)

            if precision == "bf16" and device.type != "cuda":
                rows.append({"precision": precision, "batch": batch, "skipped": "bf16: GPU only"})
                continue
            seconds = _timed(step, device, cfg.iters)
            rows.append(
                {
                    "precision": precision,
                    "batch": batch,
                    "seconds": seconds,
                    "img_per_s": batch / seconds,
                    "latency_ms": 1000 * seconds / batch,
                }
            )
    return rows


def _random_support(k: int, size: int, seed: int = 0) -> SupportSet:
    """k normal + k abnormal random images: adaptation cost does not depend on content."""
    rng = np.random.default_rng(seed)
    images = [rng.random((size, size, 3), dtype=np.float32) for _ in range(2 * k)]
    masks = [np.zeros((size, size), bool) for _ in range(2 * k)]
    for m in masks[k:]:
        m[size // 4 : size // 2, size // 4 : size // 2] = True
    return SupportSet(images, [0] * k + [1] * k, masks, [True] * (2 * k), clsname="brain")


def adaptation_time(method: AnomalyMethod, cfg: SpeedConfig, device: torch.device) -> dict:
    """Wall time of the method's k-shot schedule, synthesis and data loading included."""
    support = _random_support(cfg.k, method.backbone.image_size)
    if method.normal_only:
        support = SupportSet(
            support.normals, [0] * cfg.k, support.masks[: cfg.k], [True] * cfg.k, support.clsname
        )
    method.support, method.class_name = support, support.clsname
    epochs = cfg.epochs or method.cfg.epochs
    start = time.perf_counter()
    train_set = method.train_dataset([support], seed=0)
    result = fit(
        method,
        train_set,
        [],
        TrainConfig(select="last"),
        epochs,
        method.cfg.batch_size,
        device,
        progress=False,
        log=lambda _: None,
    )
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "k": cfg.k,
        "epochs": epochs,
        "batch_size": method.cfg.batch_size,
        "items_per_epoch": len(train_set),
        "seconds": seconds,
        "fit_seconds": result.seconds,
    }


def run_speed(cfg: SpeedConfig, output: str | Path | None = None) -> dict:
    """Measure everything in `cfg`; write JSON to `output` if given; return the report."""
    device = resolve_device(cfg.device)
    METHODS.get(cfg.method)
    method = create_method(cfg.method, load_backbone(cfg.backbone, device)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    report = {
        "method": cfg.method,
        "config": asdict(cfg),
        "device": _device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "inference": inference_speed(method, cfg, device),
        "peak_memory_inference_mib": peak_memory_mib(device),
    }
    if cfg.adapt:
        report["adaptation"] = adaptation_time(method, cfg, device)
        report["peak_memory_mib"] = peak_memory_mib(device)
    report["summary"] = summary_line(report)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=1))
    return report


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def summary_line(report: dict) -> str:
    """One line: best throughput, batch-1 latency, adaptation time, peak memory."""
    timed = [r for r in report["inference"] if "img_per_s" in r]
    best = max(timed, key=lambda r: r["img_per_s"])
    single = [r for r in timed if r["batch"] == 1]
    parts = [
        f"{report['method']} on {report['device']}: {best['img_per_s']:.1f} img/s "
        f"(batch {best['batch']}, {best['precision']})"
    ]
    if single:
        parts.append(f"latency {single[0]['latency_ms']:.1f} ms")
    if "adaptation" in report:
        a = report["adaptation"]
        parts.append(f"k={a['k']} adaptation {a['seconds']:.1f} s ({a['epochs']} epochs)")
        parts.append(f"peak memory {report['peak_memory_mib']:.0f} MiB")
    return ", ".join(parts)
