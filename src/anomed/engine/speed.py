"""`anomed bench speed`: throughput, latency, adaptation time and peak memory of a method.

Numbers, not assertions: the JSON it writes is what a closing note or a paper table quotes.
Decoding is excluded (inputs are random tensors already in memory); on GPU every timing is
bracketed by synchronisation.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from anomed.backbone import BackboneConfig, load_backbone
from anomed.config import DEVICE, Bounds, Positive, TrainConfig, from_dict, to_dict
from anomed.data.datasets import SupportSet
from anomed.engine.device import CPU_BF16_ENV, autocast, resolve_device, uses_bf16
from anomed.engine.profile import profile_inference, profile_training
from anomed.engine.timing import PeakMemory, sync, timed_batch
from anomed.engine.train import fit, resolve_schedule
from anomed.methods.base import METHODS, AnomalyMethod, create_method
from anomed.outputs import write_json

RuntimeName = Literal["torch-compile", "onnx", "onnx-int8", "openvino", "openvino-int8"]


@dataclass
class SpeedConfig:
    """What to measure."""

    method: str = "mediclip"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    device: Annotated[str, DEVICE] = "auto"
    batch_sizes: tuple[Positive, ...] = (1, 32, 128)
    precisions: tuple[Literal["fp32", "bf16"], ...] = ("fp32", "bf16")
    iters: Positive = 5  # timed iterations per setting (after one warm-up)
    k: Positive = 16  # shots for the adaptation timing
    epochs: Positive | None = None  # None: the method's default schedule
    adapt: bool = True
    adapt_batch_size: Positive | None = None  # None: the method's; 1 mimics the reference loops
    cache: tuple[bool, ...] = (True, False)  # feature cache on/off (side-adapter methods)
    compile: bool = False  # torch.compile the frozen blocks first
    # cast the frozen backbone's weights to bf16 (bf16 rows only) instead of autocasting them
    frozen_bf16: bool = False
    num_workers: Annotated[int, Bounds(0, 64)] = 0  # data-loading workers for the adaptation
    profile: bool = False  # add operator profiles of inference and of adaptation steps
    onnx: bool = False  # also time the exported ONNX graph under onnxruntime (fp32)
    # more runtimes beside PyTorch eager (export.bench): torch-compile, onnx, onnx-int8,
    # openvino, openvino-int8 (fp32 inference rows only)
    runtimes: tuple[RuntimeName, ...] = ()


def cast_matmul_weights(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the weights of the matrix products (linear, conv, attention projections) to `dtype`
    in place: autocast then stops re-casting them on every call. Norms, embeddings and biases
    added outside a product keep their precision, so fp32 tokens still meet fp32 norms."""
    for sub in module.modules():
        if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)):
            sub.to(dtype)
        elif isinstance(sub, torch.nn.MultiheadAttention):
            for name in ("in_proj_weight", "in_proj_bias"):
                param = getattr(sub, name, None)
                if param is not None:
                    param.data = param.data.to(dtype)


def _precisions(cfg: SpeedConfig, device: torch.device) -> list[str]:
    if cfg.frozen_bf16:  # bf16 weights need bf16 autocast around the trainable parts
        return [p for p in cfg.precisions if p == "bf16" and uses_bf16(device, True)]
    return [p for p in cfg.precisions if p == "fp32" or uses_bf16(device, True)]


def inference_speed(method: AnomalyMethod, cfg: SpeedConfig, device: torch.device) -> list[dict]:
    """img/s and peak memory per batch size and precision (bf16 on GPU, or on CPU when asked);
    batch 1 also gives the single-image latency."""
    size = method.backbone.image_size
    rows = []
    for precision in cfg.precisions:
        if precision not in _precisions(cfg, device):
            why = f"bf16: GPU only ({CPU_BF16_ENV}=1)"
            if precision == "fp32":
                why = "fp32 rows need fp32 weights (frozen_bf16 is set)"
            rows.append({"precision": precision, "skipped": why})
            continue
        for batch in cfg.batch_sizes:
            images = torch.rand(batch, 3, size, size, device=device)

            def step(images: torch.Tensor = images, precision: str = precision) -> object:
                with torch.inference_mode(), autocast(device, precision == "bf16"):
                    return method(images)

            rows.append({"precision": precision, **timed_batch(step, device, batch, cfg.iters)})
    return rows


def _random_support(k: int, size: int, seed: int = 0, labelled: bool = True) -> SupportSet:
    """k normal (+ k abnormal) random images: adaptation cost does not depend on content."""
    rng = np.random.default_rng(seed)
    n = 2 * k if labelled else k
    images = [rng.random((size, size, 3), dtype=np.float32) for _ in range(n)]
    masks = [np.zeros((size, size), bool) for _ in range(n)]
    for m in masks[k:]:
        m[size // 4 : size // 2, size // 4 : size // 2] = True
    return SupportSet(images, [0] * k + [1] * (n - k), masks, [True] * n, clsname="brain")


def adaptation_time(
    method: AnomalyMethod, cfg: SpeedConfig, device: torch.device, precision: str, cache: bool
) -> dict:
    """Wall time and peak memory of the method's k-shot schedule: synthesis, data loading and
    the validation passes of a real run included (validation: 4 more random images per class).
    """
    size, labelled = method.backbone.image_size, not method.normal_only
    support = _random_support(cfg.k, size, labelled=labelled)
    validation = _random_support(4, size, 1, labelled)
    method.setup([support], support.clsname, validation, target=support)
    epochs, batch = resolve_schedule(method, cfg.epochs, cfg.adapt_batch_size, 2 * cfg.k)
    train_cfg = TrainConfig(
        amp=precision == "bf16", cache_features=cache, num_workers=cfg.num_workers
    )
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        train_set = method.train_dataset([support], seed=0)
        val_items = method.validation_items(validation, seed=0)
        result = fit(
            method,
            train_set,
            val_items,
            train_cfg,
            epochs,
            batch,
            device,
            progress=False,
            log=lambda _: None,
        )
        sync(device)
        seconds = time.perf_counter() - start
    return {
        "precision": precision,
        "cache": result.cached,
        "k": cfg.k,
        "epochs": epochs,
        "batch_size": batch,
        "items_per_epoch": len(train_set),
        "optimizer_steps": epochs * -(-len(train_set) // batch),
        "seconds": seconds,
        "fit_seconds": result.seconds,
        "peak_memory_mib": memory.peak_mib,
    }


def _adaptation_rows(cfg: SpeedConfig, backbone, device: torch.device) -> list[dict]:
    """One row per precision x cache setting, each from a freshly initialised method."""
    cacheable = METHODS.get(cfg.method).cacheable
    rows = []
    for precision in _precisions(cfg, device):
        for cache in sorted(set(cfg.cache) if cacheable else {False}, reverse=True):
            torch.manual_seed(0)
            method = create_method(cfg.method, backbone).to(device)
            rows.append(adaptation_time(method, cfg, device, precision, cache))
    return rows


def _profiles(cfg: SpeedConfig, backbone, method: AnomalyMethod, device: torch.device) -> dict:
    """Top operators of the largest inference batch and of a few adaptation steps, in the
    fastest precision measured (bf16 where it runs)."""
    bf16 = "bf16" in _precisions(cfg, device)
    out = {"inference": profile_inference(method, max(cfg.batch_sizes), device, bf16)}
    if method.trainable_parameters():
        torch.manual_seed(0)
        fresh = create_method(cfg.method, backbone).to(device)
        support = _random_support(cfg.k, backbone.image_size, labelled=not fresh.normal_only)
        batch = cfg.adapt_batch_size or fresh.cfg.batch_size or 2 * cfg.k
        train_cfg = TrainConfig(amp=bf16, cache_features=True in cfg.cache)
        out["adaptation_steps"] = profile_training(fresh, support, batch, device, train_cfg)
    return out


def run_speed(cfg: SpeedConfig, output: str | Path | None = None) -> dict:
    """Measure everything in `cfg`; write `speed.json` into the folder `output` if given; return
    the report. The config is checked first (every field, the method name)."""
    cfg = from_dict(SpeedConfig, to_dict(cfg))
    METHODS.get(cfg.method)
    device = resolve_device(cfg.device)
    backbone = load_backbone(cfg.backbone, device)
    if cfg.frozen_bf16:
        cast_matmul_weights(backbone, torch.bfloat16)
    if cfg.compile:
        backbone.compile_blocks()
    method = create_method(cfg.method, backbone).to(device)
    if not method.trainable_parameters():
        support = _random_support(cfg.k, backbone.image_size, labelled=False)
        method.setup([support], support.clsname, target=support)
        method.prepare()  # training-free methods score against the support set
    report = {
        "method": cfg.method,
        "config": asdict(cfg),
        "device": _device_name(device),
        "cpu": cpu_info(),
        "weights": "random init" if not cfg.backbone.pretrained else cfg.backbone.pretrained,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "inference": inference_speed(method, cfg, device),
    }
    for row in report["inference"]:
        row.update(
            runtime="torch-compile" if cfg.compile else "torch", model_mib=_torch_mib(method)
        )
    report.update(_runtime_rows(cfg, method, device))
    if cfg.adapt:
        report["adaptation"] = _adaptation_rows(cfg, backbone, device)
    if cfg.profile:
        report["profile"] = _profiles(cfg, backbone, method, device)
    report["summary"] = summary_line(report)
    if output:
        write_json(Path(output) / "speed.json", report)
    return report


def _runtime_rows(cfg: SpeedConfig, method: AnomalyMethod, device: torch.device) -> dict:
    """`onnx_inference` (fp32 ONNX, as before) and `runtimes` (every other runtime asked for);
    torch-compile last, as compiling changes the method in place."""
    from anomed.export.bench import graph_inference_speed

    out: dict[str, list[dict]] = {}
    wanted = list(dict.fromkeys((["onnx"] if cfg.onnx else []) + list(cfg.runtimes)))
    with tempfile.TemporaryDirectory(prefix="anomed-graphs-") as folder:  # one trace for all
        for name in [r for r in wanted if r != "torch-compile"]:
            rows = graph_inference_speed(
                method, name, cfg.batch_sizes, cfg.iters, device, Path(folder)
            )
            out.setdefault("runtimes", []).extend(rows)
            if name == "onnx":
                out["onnx_inference"] = rows
    if "torch-compile" in wanted and not cfg.compile:
        method.backbone.compile_blocks()
        rows = inference_speed(method, replace(cfg, precisions=("fp32",)), device)
        for row in rows:
            row.update(runtime="torch-compile", model_mib=_torch_mib(method))
        out.setdefault("runtimes", []).extend(rows)
    return out


def _torch_mib(method: AnomalyMethod) -> float:
    """The method's parameters and buffers (what a checkpoint of the whole detector holds)."""
    tensors = [*method.parameters(), *method.buffers()]
    seen = {t.data_ptr(): t.numel() * t.element_size() for t in tensors}
    return sum(seen.values()) / 2**20


CPU_FLAGS = ("avx2", "avx512", "vnni", "amx", "fma", "f16c", "bf16")


def cpu_info() -> dict:
    """The CPU model, the vector/matrix flags that decide INT8 speed (AVX2, AVX-512, VNNI, AMX)
    and the cores this process may use (Linux /proc/cpuinfo; elsewhere the platform's name)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        if key.strip() == "flags":
            flags = sorted(f for f in value.split() if any(k in f for k in CPU_FLAGS))
            break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "flags": flags,
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
    }


def cpu_line(info: dict) -> str:
    """One line for beside a table: model, INT8-relevant flags, cores and threads."""
    flags = " ".join(info["flags"]) or "none of avx2/avx512/vnni/amx"
    return (
        f"CPU: {info['model']}; flags: {flags}; {info['cores']} cores available, "
        f"{info['torch_threads']} threads"
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def summary_line(report: dict) -> str:
    """One line: best throughput, batch-1 latency, fastest adaptation, their peak memory."""
    timed = [r for r in report["inference"] if "img_per_s" in r]
    best = max(timed, key=lambda r: r["img_per_s"])
    single = [r for r in timed if r["batch"] == 1]
    parts = [
        f"{report['method']} on {report['device']}: {best['img_per_s']:.1f} img/s "
        f"(batch {best['batch']}, {best['precision']}, {best['peak_memory_mib']:.0f} MiB)"
    ]
    if single:
        parts.append(f"latency {min(r['latency_ms'] for r in single):.1f} ms")
    others = [r for r in report.get("runtimes", []) if "img_per_s" in r]
    if others:
        fast = max(others, key=lambda r: r["img_per_s"])
        label = "ONNX Runtime" if fast["runtime"] == "onnx" else fast["runtime"]
        parts.append(
            f"{label} {fast['img_per_s']:.1f} img/s (batch {fast['batch']}, {fast['precision']})"
        )
    if report.get("adaptation"):
        a = min(report["adaptation"], key=lambda r: r["seconds"])
        cached = ", cached features" if a["cache"] else ""
        parts.append(
            f"k={a['k']} adaptation {a['seconds']:.1f} s ({a['epochs']} epochs, batch "
            f"{a['batch_size']}, {a['precision']}{cached}, peak {a['peak_memory_mib']:.0f} MiB)"
        )
    return ", ".join(parts)
