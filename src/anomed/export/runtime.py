"""Running an exported model: `OnnxDetector`, the `Detector` of `predict --runtime onnx`.

A graph is loaded only with its sidecar (`model.json`, see `anomed.export.onnx`), and only when
the two belong together and, for a graph inside a run folder, when the run's weights are the ones
it was exported from: a run trained again needs a new export, never a stale answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from anomed.config import from_dict
from anomed.engine.checkpoint import WEIGHTS, CheckpointInfo, sha256_file
from anomed.engine.detector import Detector, Scored
from anomed.engine.domain import check_mode
from anomed.errors import AnomedError
from anomed.export.onnx import MODEL_NAME, _import_runtime, normalise, sidecar_path


class OnnxDetector(Detector):
    """An exported model under onnxruntime with `Detector`'s interface and decisions.

    Reading, checking, resizing, per-input errors and the threshold rule are inherited, so
    predict and the service treat both runtimes alike; only the forward pass differs (there is
    no torch method: `method` is None)."""

    runtime = "onnx"

    def __init__(self, session, sidecar: dict, info: CheckpointInfo, path: Path, batch_size=16):
        self.method = None
        self.session = session
        self.sidecar = sidecar
        self.info = info
        self.path = path
        self.batch_size = batch_size
        self.run_dir = path  # what predictions.json names as their source: this very file
        on_gpu = "CUDAExecutionProvider" in session.get_providers()
        self.device = torch.device("cuda" if on_gpu else "cpu")
        self.mean = np.array(sidecar["input"]["mean"], np.float32)
        self.std = np.array(sidecar["input"]["std"], np.float32)
        self.guard = None  # the graph holds it: output `domain_distance` (engine.domain)
        self.domain_check = "warn"
        names = {o.name for o in session.get_outputs()}
        guarded = "domain_distance" in names and sidecar.get("domain_threshold") is not None
        self._domain_threshold = sidecar["domain_threshold"] if guarded else None

    @property
    def domain_threshold(self) -> float | None:
        return self._domain_threshold

    @property
    def image_size(self) -> int:
        return int(self.sidecar["image_size"])

    def score_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, S, S, 3) float32 in [0, 1] -> scores (B,), maps (B, S, S)."""
        x = normalise(images, self.mean, self.std)
        maps, scores = self.session.run(["anomaly_map", "score"], {"image": x})
        return np.asarray(scores, np.float32), np.asarray(maps, np.float32)

    def domain_batch(self, images: np.ndarray) -> np.ndarray | None:
        return self.run_batch(images).domain

    def run_batch(self, images: np.ndarray) -> Scored:
        """One session run: scores, maps and (when checked) the graph's domain distances."""
        if not self.checks_domain:
            return Scored(*self.score_batch(images), None)
        x = normalise(images, self.mean, self.std)
        names = ["anomaly_map", "score", "domain_distance"]
        maps, scores, domain = self.session.run(names, {"image": x})
        f32 = np.float32
        return Scored(np.asarray(scores, f32), np.asarray(maps, f32), np.asarray(domain, f32))


def resolve_onnx_path(source: str | Path) -> Path:
    """A run folder holding model.onnx, or the path of an .onnx file."""
    path = Path(source)
    if path.is_dir():
        if not (path / MODEL_NAME).is_file():
            raise AnomedError(
                f"{source}: holds no {MODEL_NAME}. Fix: anomed export {source} --format onnx "
                "(or pass the .onnx file)."
            )
        return path / MODEL_NAME
    if path.suffix != ".onnx" or not path.is_file():
        raise AnomedError(
            f"{source}: not an .onnx file or a run folder holding {MODEL_NAME}. Fix: check the "
            "path, or export first (anomed export RUN --format onnx)."
        )
    return path


def _providers(device: str, ort) -> list:
    available = ort.get_available_providers()
    if device in ("auto", "cpu"):
        use_gpu = device == "auto" and "CUDAExecutionProvider" in available
        return (["CUDAExecutionProvider"] if use_gpu else []) + ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise AnomedError(
                f"--device {device}: this onnxruntime has no CUDA provider (available: "
                f"{', '.join(available)}). Fix: pip install onnxruntime-gpu, or --device cpu."
            )
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise AnomedError(f"--device {device}: use auto, cpu, cuda or cuda:N")


def read_sidecar(path: Path) -> dict:
    """The sidecar of `path`, checked to describe this very file and, when the file sits in a
    run folder, that run's current weights (a re-trained run needs a new export)."""
    side = sidecar_path(path)
    fix = f"Fix: export again (anomed export RUN --format onnx -o {path} --overwrite)."
    try:
        sidecar = json.loads(side.read_text())
        expected = sidecar["onnx_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnomedError(f"{side}: missing or unreadable export settings ({exc}). {fix}") from exc
    if sha256_file(path) != expected:
        raise AnomedError(f"{path}: does not match {side.name} (replaced or edited). {fix}")
    data, data_sha = sidecar.get("external_data"), sidecar.get("external_data_sha256")
    if data and data_sha:  # the graph's weights file: written first, so checked too
        weights_file = path.parent / str(data)
        if not weights_file.is_file() or sha256_file(weights_file) != data_sha:
            raise AnomedError(
                f"{weights_file}: missing, or not the weights {side.name} was exported with "
                f"(another export's, or edited). {fix}"
            )
    weights = path.parent / WEIGHTS
    recorded = (sidecar.get("checkpoint") or {}).get("weights_sha256")
    if weights.is_file() and recorded and sha256_file(weights) != recorded:
        raise AnomedError(
            f"{path}: exported from earlier weights than {weights} (the run was trained again "
            f"since). {fix}"
        )
    return sidecar


def load_session(path: Path, device: str = "auto", threads: int = 0):
    """An onnxruntime session of `path` on `device` (auto: CUDA when this onnxruntime has it).
    `threads`: intra-op threads (0: onnxruntime's default, all cores)."""
    _, ort = _import_runtime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: no per-node placement chatter
    providers = _providers(device, ort)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise AnomedError(f"{path}: onnxruntime cannot load it ({exc}).") from exc


def load_onnx_detector(
    source: str | Path,
    device: str = "auto",
    batch_size: int = 16,
    threads: int = 0,
    domain_check: str = "warn",
) -> OnnxDetector:
    """An `OnnxDetector` from a run folder (RUN/model.onnx) or an .onnx file with its sidecar."""
    path = resolve_onnx_path(source)
    sidecar = read_sidecar(path)
    info = from_dict(CheckpointInfo, sidecar["info"])
    detector = OnnxDetector(load_session(path, device, threads), sidecar, info, path, batch_size)
    detector.domain_check = check_mode(domain_check)
    return detector
