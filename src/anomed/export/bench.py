"""Exported-graph rows of `anomed bench speed --runtime ...`: the same method under other runtimes.

Timed like the PyTorch rows (median of `iters` runs after one warm-up, random inputs already in
memory, decoding excluded), each runtime limited to torch's thread count so all use the same
cores. Runtimes:

- `onnx`           the fp32 ONNX graph of `anomed export` under onnxruntime (CUDA if asked);
- `onnx-int8`      its static INT8 QDQ version (export.quantize), onnxruntime CPU;
- `openvino`       the fp32 OpenVINO IR, CPU plugin;
- `openvino-int8`  the INT8 IR (the QDQ graph converted, as `anomed export` makes it).

INT8 graphs here are calibrated on seeded random images: speed does not depend on the weights or
the calibration, but these graphs are for timing only (accuracy: `anomed export --quantize`).
Each row gives the size of the graph on disk (`model_mib`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from anomed.engine.timing import timed_batch
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod

GRAPH_RUNTIMES = ("onnx", "onnx-int8", "openvino", "openvino-int8")


def _disk_mib(path: Path) -> float:
    """A graph and the weights file beside it (.onnx.data, .bin)."""
    files = [path, Path(f"{path}.data"), path.with_suffix(".bin")]
    return sum(p.stat().st_size for p in files if p.is_file()) / 2**20


def _build(method: AnomalyMethod, runtime: str, folder: Path, device: torch.device):
    """Export `method` for `runtime` into `folder`: (run(x) -> outputs, provider, model_mib)."""
    from anomed.export.onnx import trace_to_onnx
    from anomed.export.runtime import load_session

    size = method.backbone.image_size
    fp32 = folder / "model.onnx"
    if not fp32.is_file():  # one trace (and one quantization) serves every runtime
        trace_to_onnx(method, fp32, copy=True)
    graph = fp32
    if runtime.endswith("int8"):
        from anomed.export.quantize import quantize_onnx

        graph = folder / "model-int8.onnx"
        if not graph.is_file():
            rng = np.random.default_rng(0)
            calib = rng.standard_normal((8, 3, size, size), dtype=np.float32)
            quantize_onnx(fp32, graph, calib)
    threads = torch.get_num_threads()
    if runtime.startswith("openvino"):
        from anomed.export.openvino import OpenVinoModel, check_device, convert_onnx, save_ir

        check_device(device.type)
        xml = folder / f"{runtime}.xml"
        save_ir(convert_onnx(graph), xml)
        return OpenVinoModel(xml, threads).run, "OpenVINO CPU", _disk_mib(xml)
    session = load_session(graph, "cpu" if runtime == "onnx-int8" else str(device), threads)

    def run(x: np.ndarray) -> object:
        return session.run(None, {"image": x})

    return run, session.get_providers()[0], _disk_mib(graph)


def graph_inference_speed(
    method: AnomalyMethod,
    runtime: str,
    batch_sizes: tuple[int, ...],
    iters: int,
    device: torch.device,
    folder: Path | None = None,
) -> list[dict]:
    """img/s, latency, peak memory and model size of `method` exported for `runtime`; graphs go
    to `folder` (reused by later calls with the same folder), else to a temporary one."""
    if runtime not in GRAPH_RUNTIMES:
        raise AnomedError(f"--runtime {runtime}: use torch, torch-compile or {GRAPH_RUNTIMES}")
    precision = "int8" if runtime.endswith("int8") else "fp32"
    base = {"runtime": runtime, "precision": precision}
    size = method.backbone.image_size
    with tempfile.TemporaryDirectory(prefix="anomed-graph-") as tmp:
        try:
            run, provider, model_mib = _build(method, runtime, Path(folder or tmp), device)
        except AnomedError as exc:  # e.g. no CUDA provider, no OpenVINO
            return [{**base, "skipped": str(exc)}]
        rows = []
        rng = np.random.default_rng(0)
        for batch in batch_sizes:
            x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)

            def step(x: np.ndarray = x) -> object:
                return run(x)

            row = {**base, "provider": provider, "model_mib": model_mib}
            # memory: the host's resident set (the runtime's own arena)
            rows.append({**row, **timed_batch(step, torch.device("cpu"), batch, iters)})
    return rows


def onnx_inference_speed(
    method: AnomalyMethod, batch_sizes: tuple[int, ...], iters: int, device: torch.device
) -> list[dict]:
    """The fp32 ONNX rows (kept for `--runtime onnx` reports: `onnx_inference`)."""
    return graph_inference_speed(method, "onnx", batch_sizes, iters, device)
