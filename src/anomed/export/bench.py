"""ONNX rows of `anomed bench speed --runtime onnx`: the same method, exported, under onnxruntime.

Timed like the PyTorch rows (median of `iters` runs after one warm-up, random inputs already in
memory, decoding excluded), with onnxruntime limited to torch's thread count so both runtimes
use the same cores. fp32 only (the exported graph is fp32).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from anomed.engine.timing import timed_batch
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod


def onnx_inference_speed(
    method: AnomalyMethod, batch_sizes: tuple[int, ...], iters: int, device: torch.device
) -> list[dict]:
    """img/s, latency and peak memory of the exported method per batch size."""
    from anomed.export.onnx import trace_to_onnx
    from anomed.export.runtime import load_session

    size = method.backbone.image_size
    with tempfile.TemporaryDirectory(prefix="anomed-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        trace_to_onnx(method, path, copy=True)
        try:
            session = load_session(path, str(device), threads=torch.get_num_threads())
        except AnomedError as exc:  # e.g. no CUDA provider in this onnxruntime
            return [{"runtime": "onnx", "precision": "fp32", "skipped": str(exc)}]
        providers = session.get_providers()
        rows = []
        rng = np.random.default_rng(0)
        for batch in batch_sizes:
            x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)

            def step(x: np.ndarray = x) -> object:
                return session.run(None, {"image": x})

            row = {"runtime": "onnx", "provider": providers[0], "precision": "fp32"}
            # memory: the host's resident set (ONNX Runtime's own arena)
            rows.append({**row, **timed_batch(step, torch.device("cpu"), batch, iters)})
    return rows
