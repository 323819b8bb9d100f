"""OpenVINO IR (`openvino.xml` + `openvino.bin`) of an exported detector, and running it on CPU.

The IR is converted from the checked fp32 ONNX graph (`openvino.convert_model`), so it has the
same input and outputs (`image` -> `anomaly_map`, `score`, and any extra output the graph has);
INT8 comes from NNCF (see export.quantize). Weights stay fp32 in the file (`compress_to_fp16`
off): fp16 weights would be one more difference from PyTorch to check.

Inference runs with `INFERENCE_PRECISION_HINT` f32: on CPUs with AVX512-BF16 or AMX, OpenVINO
would otherwise run an fp32 IR in bf16, and the self-check would not describe what runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomed.errors import AnomedError


def import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise AnomedError(
            f"OpenVINO export and runtime need openvino and nncf ({exc}). "
            "Fix: pip install 'anomed[openvino]'."
        ) from exc
    return openvino


def convert_onnx(onnx_path: Path):
    """The OpenVINO model of an ONNX graph (in memory)."""
    ov = import_openvino()
    try:
        return ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's own conversion errors
        reason = " ".join(str(exc).split())[:300]
        raise AnomedError(
            f"OpenVINO cannot convert the graph ({type(exc).__name__}: {reason})"
        ) from exc


def save_ir(model, xml_path: Path) -> None:
    """Write `xml_path` and its `.bin` weights, weights kept fp32."""
    import_openvino().save_model(model, str(xml_path), compress_to_fp16=False)


def check_device(device: str) -> None:
    """OpenVINO runs anomed's graphs on the CPU plugin only."""
    if device not in ("auto", "cpu"):
        raise AnomedError(
            f"--device {device}: --runtime openvino runs on the CPU. Fix: --device cpu (or "
            "--runtime onnx / torch for a GPU)."
        )


class OpenVinoModel:
    """A compiled IR: `run(x)` -> every output by name (numpy), like an onnxruntime session."""

    def __init__(self, model_or_path, threads: int = 0) -> None:
        ov = import_openvino()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        source = str(model_or_path) if isinstance(model_or_path, Path) else model_or_path
        try:
            self.compiled = ov.Core().compile_model(source, "CPU", config)
        except Exception as exc:
            raise AnomedError(f"{model_or_path}: OpenVINO cannot load it ({exc}).") from exc
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        results = self.request.infer({"image": np.ascontiguousarray(x, np.float32)})
        return {
            name: np.array(results[out])
            for name, out in zip(self.output_names, self.compiled.outputs, strict=True)
        }
