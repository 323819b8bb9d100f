"""`anomed export RUN`: trace, convert or quantize, self-check, and only then write.

Four artefacts, each beside a JSON sidecar (`<name>.json`) that a loader checks by hash:

| --format, --quantize | default file in RUN      | runs under     | checked against PyTorch fp32 |
|----------------------|--------------------------|----------------|------------------------------|
| onnx                 | model.onnx               | onnxruntime    | max difference <= 1e-3       |
| onnx, int8           | model-int8.onnx          | onnxruntime    | the accuracy gates           |
| openvino             | openvino.xml + .bin      | OpenVINO (CPU) | max difference <= 1e-3       |
| openvino, int8       | openvino-int8.xml + .bin | OpenVINO (CPU) | the accuracy gates           |

Every artefact starts as the fp32 ONNX graph (export.onnx); OpenVINO converts that graph, INT8
quantizes it (export.quantize). Everything is built in a hidden folder beside the target and
moved into place after the check passed: a refusal leaves nothing (an earlier export stays).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anomed._version import __version__
from anomed.config import to_dict
from anomed.data.datasets import load_sample
from anomed.engine.checkpoint import (
    WEIGHTS,
    CheckpointInfo,
    load_checkpoint,
    load_domain_guard,
    sha256_file,
)
from anomed.engine.domain import DomainGuard
from anomed.errors import AnomedError
from anomed.export import onnx as onnx_export
from anomed.export.gates import GateCheck, Gates, gate_check
from anomed.export.graph import check_exportable
from anomed.export.onnx import (
    OPSET,
    SelfCheck,
    _finish_model,
    _metadata,
    check_images,
    normalise,
    sidecar_path,
    torch_domain,
    trace_to_onnx,
)
from anomed.methods.base import AnomalyMethod
from anomed.outputs import dumps_json

FORMATS = ("onnx", "openvino")
GATE_IMAGES = 100  # test images the INT8 gates are measured on, at most
CHUNK = 8  # images per forward pass in the checks
INT8_TOOLS = ("qdq", "nncf")  # OpenVINO INT8: ONNX Runtime's QDQ graph converted, or NNCF


def default_name(fmt: str, quantize: str | None) -> str:
    """The file name an export gets in its run folder."""
    stem = "model" if fmt == "onnx" else "openvino"
    return f"{stem}{'-int8' if quantize else ''}{'.onnx' if fmt == 'onnx' else '.xml'}"


def weights_name(target: Path) -> str:
    """The weights file that travels with a graph: `.onnx.data` (large ONNX) or `.bin` (IR)."""
    return target.with_suffix(".bin").name if target.suffix == ".xml" else f"{target.name}.data"


@dataclass
class ExportReport:
    path: Path
    sidecar: Path
    method: str
    size_mib: float  # the graph and its weights file, if any
    seconds: float  # tracing, converting, quantizing and saving, without the self-check
    check: SelfCheck | GateCheck
    fmt: str = "onnx"
    precision: str = "fp32"
    calibration: str | None = None

    def lines(self) -> list[str]:
        kind = "ONNX" if self.fmt == "onnx" else "OpenVINO IR"
        cal = f", calibrated on {self.calibration}" if self.calibration else ""
        return [
            f"exported {self.method} to {self.path} ({kind} {self.precision}{cal}, "
            f"{self.size_mib:.1f} MiB, dynamic batch) in {self.seconds:.1f} s; settings in "
            f"{self.sidecar.name}",
            self.check.line(),
        ]


def check_target(target: Path, overwrite: bool, suffix: str) -> None:
    """-o must name a new (or, with --overwrite, an earlier) file with `suffix` in a writable
    folder; its sidecar counts as taken too."""
    kind = "an ONNX" if suffix == ".onnx" else "an OpenVINO IR"
    if target.suffix != suffix:
        raise AnomedError(f"-o {target}: {kind} file name must end in {suffix}. Fix: rename it.")
    if target.is_dir():
        raise AnomedError(f"-o {target}: is a folder. Fix: name a file, e.g. {target}/x{suffix}")
    taken = [p for p in (target, sidecar_path(target)) if p.exists()]
    if taken and not overwrite:
        raise AnomedError(
            f"-o {target}: {taken[0]} exists (an earlier export). Fix: pass --overwrite to "
            "replace it, or pick another -o."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise AnomedError(f"-o {target}: {target.parent} is not writable. Fix: pick another -o.")


def test_set(info: CheckpointInfo, size: int, n: int = GATE_IMAGES):
    """(images (N, S, S, 3), labels (N,) or None, masks (N, S, S) or None, description, file
    names): the run's test images (abnormal and normal alternating, at most n), else
    `check_images`."""
    samples = []
    if info.run.data.root:
        try:
            from anomed.engine.run import load_splits

            test = load_splits(info.run, log=lambda _: None).test
            normal = [s for s in test if s.label == 0]
            abnormal = [s for s in test if s.label != 0]
            samples = [s for pair in zip(abnormal, normal, strict=False) for s in pair]
            samples += [s for s in test if s not in samples]
            loaded = [load_sample(s, size) for s in samples[:n]]
        except (AnomedError, OSError, ValueError):
            samples = []
    if not samples:
        images, source = check_images(None, size)
        return images, None, None, source, None
    images = np.stack([im for im, _ in loaded]).astype(np.float32)
    masks = np.stack([m for _, m in loaded])
    labels = np.array([int(s.label != 0) for s in samples[:n]])
    has_masks = all(s.masks or s.label == 0 for s in samples[:n])
    names = [str(s.image) for s in samples[:n]]
    return images, labels, masks if has_masks else None, f"{len(images)} test images", names


def reference_outputs(method: AnomalyMethod, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch fp32 on CPU, `CHUNK` images at a time: (scores (N,), maps (N, S, S))."""
    torch_outputs = onnx_export.torch_outputs
    parts = [torch_outputs(method, images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def graph_outputs(runner, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Run `runner(x_chunk) -> {name: array}` over normalised `x`: (scores, maps, domain
    distances or None when the graph has no guard)."""
    parts = [runner(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]
    scores = np.concatenate([np.asarray(p["score"], np.float32) for p in parts])
    maps = np.concatenate([np.asarray(p["anomaly_map"], np.float32) for p in parts])
    domain = None
    if all("domain_distance" in p for p in parts):
        domain = np.concatenate([np.asarray(p["domain_distance"], np.float32) for p in parts])
    return scores, maps, domain


def domain_gap(reference: np.ndarray | None, found: np.ndarray | None) -> float | None:
    """Largest relative difference of the graph's domain distances from PyTorch's (None: no
    guard; inf: the graph lost it or its shape)."""
    if reference is None:
        return None
    if found is None or found.shape != reference.shape:
        return float("inf")
    return float((np.abs(found - reference) / np.maximum(1.0, np.abs(reference))).max())


def export_run(
    run: str | Path,
    output: str | Path | None = None,
    overwrite: bool = False,
    opset: int = OPSET,
    fmt: str = "onnx",
    quantize: str | None = None,
    gates: Gates | None = None,
    int8_tool: str = "qdq",
) -> ExportReport:
    """Export a saved run as `output` (default RUN/<default_name>) + its JSON sidecar, after the
    self-check passed (fp32: within 1e-3 of PyTorch; int8: `gates`); on any failure nothing is
    left behind (an earlier export stays)."""
    if fmt not in FORMATS:
        raise AnomedError(f"--format {fmt}: use {' or '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise AnomedError(f"--quantize {quantize}: use int8")
    if int8_tool not in INT8_TOOLS:
        raise AnomedError(f"--int8-tool {int8_tool}: use {' or '.join(INT8_TOOLS)}")
    gates = gates or Gates()
    run = Path(run)
    method, info = load_checkpoint(run, "cpu")
    guard = load_domain_guard(run, info)
    check_exportable(method)  # before any work: a refusal is one line, at once
    if fmt == "openvino":
        from anomed.export.openvino import import_openvino

        import_openvino()
    target = Path(os.path.abspath(output or run / default_name(fmt, quantize)))
    check_target(target, overwrite, ".onnx" if fmt == "onnx" else ".xml")
    size = method.backbone.image_size
    if quantize:
        images, labels, masks, source, names = test_set(info, size)
    else:
        (images, source), labels, masks, names = check_images(info, size), None, None, None
    reference = reference_outputs(method, images)  # the detector as it is, before any folding
    ref_domain = torch_domain(method, guard, images)
    calib, calib_source = None, None
    if quantize:
        from anomed.export.quantize import calibration_images

        calib, calib_source = calibration_images(method, info)
    metadata = _metadata(method, info)
    meta = {k.removeprefix("anomed."): json.loads(v) for k, v in metadata.items()}
    mean, std = np.array(meta["mean"], np.float32), np.array(meta["std"], np.float32)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        start = time.perf_counter()
        staged = stage / "graph" / target.name
        plain = fmt == "onnx" and not quantize  # the traced graph is the artefact itself
        fp32 = staged if plain else stage / "fp32" / "model.onnx"
        for folder in {staged.parent, fp32.parent}:
            folder.mkdir()
        _trace(method, info, fp32, opset, guard)
        _finish_model(fp32, metadata, onnx_export._EXTERNAL_ABOVE)
        x_cal = None if calib is None else normalise(calib, mean, std)
        runner, label = _build(fp32, staged, fmt, x_cal, metadata, int8_tool)
        seconds = time.perf_counter() - start
        *got, domain = graph_outputs(runner, normalise(images, mean, std))
        gap = domain_gap(ref_domain, domain)
        if quantize:
            threshold = info.calibration.threshold
            check = gate_check(
                reference, got, labels, masks, threshold, gates, label, source, names
            )
        else:
            check = _fp32_check(reference, got, source, len(images), info, label)
            check.max_domain_diff = gap
        if quantize and gap is not None and not np.isfinite(gap):
            raise AnomedError(
                f"{info.run.method}: the {label} graph lost the domain guard's output. "
                "Nothing was written."
            )
        if not check.passed:
            raise AnomedError(
                f"{info.run.method}: the {label} graph does not reproduce PyTorch: "
                f"{check.line()}. Nothing was written."
            )
        tool = None if not quantize else "qdq" if fmt == "onnx" else int8_tool
        sidecar = _sidecar(staged, run, info, meta, check, opset, seconds, fmt, tool)
        sidecar["calibration"] = calib_source
        sidecar["self_check"].setdefault("max_domain_diff", gap)
        (staged.parent / sidecar_path(target).name).write_text(dumps_json(sidecar) + "\n")
        _install(staged.parent, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    files = (target, target.parent / weights_name(target))
    size_mib = sum(p.stat().st_size for p in files if p.exists()) / 2**20
    precision = quantize or "fp32"
    return ExportReport(
        target,
        sidecar_path(target),
        info.run.method,
        size_mib,
        seconds,
        check,
        fmt,
        precision,
        calib_source,
    )


def _trace(
    method: AnomalyMethod, info: CheckpointInfo, path: Path, opset: int, guard: DomainGuard | None
) -> None:
    try:
        trace_to_onnx(method, path, opset, copy=True, guard=guard)
    except AnomedError:
        raise
    except Exception as exc:  # the exporter's own failures, as one line
        reason = " ".join(str(exc).split())[:300]
        raise AnomedError(
            f"{info.run.method}: cannot be exported to ONNX ({type(exc).__name__}: {reason})"
        ) from exc


def _build(fp32: Path, staged: Path, fmt: str, x_cal: np.ndarray | None, metadata: dict, tool):
    """Write the artefact at `staged` from the fp32 graph; return (runner, label). `tool` picks
    OpenVINO's INT8: "qdq" (ONNX Runtime's QDQ graph, converted) or "nncf" (nncf.quantize)."""
    if fmt == "onnx":
        if x_cal is not None:
            from anomed.export.quantize import quantize_onnx

            quantize_onnx(fp32, staged, x_cal)
            _restore_metadata(staged, metadata)
        session = onnx_export._import_runtime()[1].InferenceSession(
            str(staged), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]

        def run(x: np.ndarray) -> dict:
            return dict(zip(names, session.run(names, {"image": x}), strict=True))

        return run, f"onnxruntime CPU, {'int8' if x_cal is not None else 'fp32'}"
    from anomed.export.openvino import OpenVinoModel, convert_onnx, save_ir
    from anomed.export.quantize import quantize_onnx, quantize_openvino

    if x_cal is not None and tool == "qdq":  # the ONNX Runtime QDQ graph, run by OpenVINO
        qdq = fp32.with_name("model-int8.onnx")
        quantize_onnx(fp32, qdq, x_cal)
        model = convert_onnx(qdq)
    else:
        model = convert_onnx(fp32)
        if x_cal is not None:
            model = quantize_openvino(model, x_cal)
    save_ir(model, staged)
    compiled = OpenVinoModel(staged)
    return compiled.run, f"OpenVINO CPU, {'int8' if x_cal is not None else 'fp32'}"


def _restore_metadata(path: Path, metadata: dict[str, str]) -> None:
    """The quantizer writes a new model: put anomed's metadata back when it dropped it."""
    import onnx

    model = onnx.load(str(path))
    have = {p.key for p in model.metadata_props}
    missing = {k: v for k, v in metadata.items() if k not in have}
    if not missing:
        return
    for key, value in missing.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(path))


def _fp32_check(reference, got, source: str, n: int, info: CheckpointInfo, label: str):
    (ref_s, ref_m), (s, m) = reference, got
    if m.shape != ref_m.shape or s.shape != ref_s.shape:
        dmap = dscore = float("inf")
    else:
        dmap, dscore = float(np.abs(m - ref_m).max()), float(np.abs(s - ref_s).max())
    threshold = info.calibration.threshold
    agree = None
    if threshold is not None and s.shape == ref_s.shape:
        agree = int(((s > threshold) == (ref_s > threshold)).sum())
    return SelfCheck(source, n, dmap, dscore, agree, onnx_export.TOLERANCE, label)


def _sidecar(staged: Path, run: Path, info, meta: dict, check, opset, seconds, fmt, tool):
    weights = staged.parent / weights_name(staged)
    graph_sha = sha256_file(staged)
    check_dict = (
        check.to_dict()
        if isinstance(check, GateCheck)
        else {**asdict(check), "passed": check.passed}
    )
    return {
        "format": f"anomed-{fmt}/1",
        "anomed_version": __version__,
        "file": staged.name,
        "graph_sha256": graph_sha,
        **({"onnx_sha256": graph_sha} if fmt == "onnx" else {}),
        "external_data": weights.name if weights.exists() else None,
        "external_data_sha256": sha256_file(weights) if weights.exists() else None,
        "runtime": "onnxruntime" if fmt == "onnx" else "openvino",
        "precision": "int8" if tool else "fp32",
        "quantization": _quantization(tool) if tool else None,
        "opset": opset,
        **{k: meta[k] for k in ("method", "preset", "class_name", "image_size")},
        "input": {
            "name": "image",
            "shape": ["batch", 3, meta["image_size"], meta["image_size"]],
            "dtype": "float32",
            "layout": "NCHW, RGB",
            "normalisation": "(pixel in [0, 1] - mean) / std, per channel",
            "mean": meta["mean"],
            "std": meta["std"],
        },
        "outputs": {
            "anomaly_map": "float32 (batch, S, S)",
            "score": "float32 (batch,); abnormal when > threshold",
            **(
                {
                    "domain_distance": "float32 (batch,); outside the training domain when > "
                    "domain_threshold"
                }
                if meta["domain_threshold"] is not None
                else {}
            ),
        },
        "threshold": meta["threshold"],
        "domain_threshold": meta["domain_threshold"],
        "map_range": meta["map_range"],
        "checkpoint": {
            "path": str(run.absolute()),
            "weights_sha256": sha256_file(run / WEIGHTS),
        },
        "info": to_dict(info),
        "self_check": check_dict,
        "export_seconds": seconds,
    }


def _quantization(tool: str) -> dict:
    from anomed.export.quantize import QUANTIZED_SCOPE

    name = "onnxruntime.quantization.quantize_static (QDQ)" if tool == "qdq" else "nncf.quantize"
    return {
        "tool": name,
        "nodes": f"MatMul/Gemm with constant weights inside the image tower's '{QUANTIZED_SCOPE}'",
        "weights": "int8, per channel, 7-bit range (no u8s8 saturation without VNNI)",
        "activations": "uint8, per tensor, asymmetric, MinMax calibration",
        "float": "LayerNorm, Softmax, GELU, residual adds, attention matmuls, patch embedding, "
        "adapters, text tower, scoring head",
    }


def _install(stage: Path, target: Path) -> None:
    """Move the staged files into place: weights, then the graph, then the sidecar (a loader
    checks the graph against the sidecar's hash, so a kill in between is caught, not mixed)."""
    stale = target.parent / weights_name(target)
    if stale.exists() and not (stage / stale.name).exists():
        stale.unlink()  # an earlier, larger export's weights
    for name in (stale.name, target.name, sidecar_path(target).name):
        if (stage / name).exists():
            os.replace(stage / name, target.parent / name)
