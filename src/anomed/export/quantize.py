"""Post-training INT8 quantization of an exported graph: ONNX Runtime (QDQ) and OpenVINO (NNCF).

What is quantized, and why (measured on the exported CLIP detectors, see docs/guides/cpu.md):
only the MatMul / Gemm nodes with a constant weight inside the image tower's transformer blocks
(`resblocks`: the attention in/out projections and the MLP), weights per output channel (int8),
activations per tensor (uint8, asymmetric). Everything that quantizes badly in a ViT or costs
little stays float: LayerNorm, Softmax, GELU, the residual adds, the attention's activation x
activation matmuls, the patch embedding, the adapters, the text tower and the scoring head
(text similarity, memory-bank search, map upsampling).

Weights use 7 bits (ONNX Runtime's `reduce_range`, NNCF's `overflow_fix`): x86 CPUs without
VNNI (AVX2, plain AVX-512) multiply u8 x s8 with VPMADDUBSW, whose 16-bit sums saturate with 8-bit
weights and garble the output (measured: rank correlation 0.98 -> 1.00 on a MediCLIP graph). VNNI
and AMX servers do not saturate; the 7-bit weights cost them little accuracy and no speed.

Calibration: the run's own validation images (normals, and the synthetic anomalies of methods
that make them), `calibration_images`; a run whose data folder is gone falls back to seeded
random images (said so in the export's sidecar).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from anomed.engine.checkpoint import CheckpointInfo
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod

CALIBRATION_IMAGES = 32  # at most; MinMax ranges settle after a few dozen images
QUANTIZED_SCOPE = "resblocks"  # node-name part of the transformer blocks
# ... except the text tower's (CondPrompt runs it per image inside the graph): quantizing it
# cost 0.01 of rank correlation on the phantoms, below the default gate
FLOAT_SCOPES = ("/prompts/", "text")


def in_scope(name: str) -> bool:
    """Whether node `name` is one of the image tower's transformer blocks."""
    return QUANTIZED_SCOPE in name and not any(part in name for part in FLOAT_SCOPES)


def calibration_images(
    method: AnomalyMethod, info: CheckpointInfo | None, n: int = CALIBRATION_IMAGES
) -> tuple[np.ndarray, str]:
    """(images (n', S, S, 3) float32 in [0, 1], description) to calibrate on: the run's
    validation items (normals and, where the method makes them, synthetic anomalies), else its
    training pool's normals, else seeded random images."""
    size = method.backbone.image_size
    images, source = _run_validation(method, info, n)
    if not len(images):
        rng = np.random.default_rng(0)
        return rng.random((min(n, 8), size, size, 3), dtype=np.float32), "8 random images"
    return images, source


def _run_validation(method, info, n: int) -> tuple[np.ndarray, str]:
    if info is None or not info.run.data.root:
        return np.empty(0), ""
    from anomed.data.datasets import load_support
    from anomed.engine.run import _shot_split, load_splits

    size = method.backbone.image_size
    try:
        splits = load_splits(info.run, log=lambda _: None)
        try:
            val = _shot_split(info.run, splits).val
        except AnomedError:  # the pool cannot be split again as it was: its normals
            val = [s for s in splits.train if s.label == 0]
        if not val:
            return np.empty(0), ""
        support = load_support(val[:n], size, info.class_name or "")
        items = method.validation_items(support, seed=info.run.train.seed)
    except (AnomedError, OSError, ValueError):
        return np.empty(0), ""  # the dataset is elsewhere now
    images = np.stack([it["image"].numpy().transpose(1, 2, 0) for it in items[:n]])
    n_syn = sum(int(it["label"]) for it in items[:n])
    detail = f", {n_syn} with synthetic anomalies" if n_syn else ""
    return images.astype(np.float32), f"{len(images)} validation images{detail}"


# ---- ONNX Runtime ------------------------------------------------------------------------------


def quantized_nodes(model) -> list[str]:
    """Names of the MatMul / Gemm nodes with a constant weight `in_scope` (an onnx model)."""
    weights = {t.name for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights and in_scope(n.name)
    ]


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """onnxruntime.quantization and NNCF log per-node advice at WARNING/INFO on the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def quantize_onnx(source: Path, target: Path, inputs: np.ndarray) -> int:
    """Write the static INT8 (QDQ) version of the fp32 graph `source` to `target`, calibrated on
    `inputs` (normalised, (N, 3, S, S)). Returns the number of quantized nodes."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    nodes = quantized_nodes(onnx.load(str(source), load_external_data=False))
    if not nodes:
        raise AnomedError(f"{source}: no transformer MatMul/Gemm to quantize")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": inputs[i : i + 1]} for i in range(len(inputs))])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with _quiet_logs():
        quantize_static(
            str(source),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no u8s8 saturation on AVX2 / AVX-512 w/o VNNI
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            use_external_data_format=Path(f"{source}.data").exists(),  # > 1.8 GB of weights
        )
    return len(nodes)


# ---- OpenVINO (NNCF) ---------------------------------------------------------------------------


def quantize_openvino(model, inputs: np.ndarray):
    """The NNCF INT8 version of an OpenVINO model (same scope and calibration as ONNX Runtime's):
    transformer preset (LayerNorm, Softmax, GELU, adds stay float), the ops outside `resblocks`
    ignored, 7-bit weights (`overflow_fix`)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    ignored = [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() in ("MatMul", "Convolution") and not in_scope(op.get_friendly_name())
    ]
    from anomed.export.onnx import _silenced_fds

    data = nncf.Dataset([inputs[i : i + 1] for i in range(len(inputs))])
    with _quiet_logs(), _silenced_fds():  # NNCF's progress bars
        return nncf.quantize(
            model,
            data,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(inputs),
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
        )
