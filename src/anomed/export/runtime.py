"""Running an exported model: the `Detector`s of `predict --runtime onnx|openvino` and `serve`.

A graph is loaded only with its sidecar (`model.json`, see `anomed.export.pipeline`), and only
when the two belong together and, for a graph inside a run folder, when the run's weights are the
ones it was exported from: a run trained again needs a new export, never a stale answer.

`GraphDetector.outputs_batch` returns every output of the graph by name, so outputs added to the
graph beside `anomaly_map` and `score` reach their callers without a change here; `score_batch`
(the `Detector` contract) picks the two it needs and keeps the rest of the last batch in
`extra_outputs`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from anomed.config import Positive, coerce, from_dict
from anomed.engine.checkpoint import WEIGHTS, CheckpointInfo, sha256_file
from anomed.engine.detector import Detector, Scored, load_detector
from anomed.engine.domain import check_mode
from anomed.errors import AnomedError
from anomed.export.onnx import MODEL_NAME, _import_runtime, normalise, sidecar_path


class GraphDetector(Detector):
    """An exported model with `Detector`'s interface and decisions.

    Reading, checking, resizing, per-input errors and the threshold rule are inherited, so
    predict and the service treat every runtime alike; only the forward pass differs (there is
    no torch method: `method` is None). Subclasses give `run_graph(x) -> {output: array}`."""

    runtime = "graph"

    def __init__(self, sidecar: dict, info: CheckpointInfo, path: Path, batch_size: int = 16):
        self.method = None
        self.sidecar = sidecar
        self.info = info
        self.path = path
        self.batch_size = batch_size
        self.run_dir = path  # what predictions.json names as their source: this very file
        self.device = torch.device("cpu")
        self.mean = np.array(sidecar["input"]["mean"], np.float32)
        self.std = np.array(sidecar["input"]["std"], np.float32)
        self.extra_outputs: dict[str, np.ndarray] = {}
        self.guard = None  # the graph holds it: output `domain_distance` (engine.domain)
        self.domain_check = "warn"
        self._domain_threshold: float | None = None

    def _find_guard(self, output_names: list[str]) -> None:
        """The graph's domain guard: its `domain_distance` output and the sidecar's threshold."""
        guarded = "domain_distance" in output_names
        threshold = self.sidecar.get("domain_threshold")
        self._domain_threshold = threshold if guarded and threshold is not None else None

    @property
    def domain_threshold(self) -> float | None:
        return self._domain_threshold

    @property
    def image_size(self) -> int:
        return int(self.sidecar["image_size"])

    @property
    def precision(self) -> str:
        return str(self.sidecar.get("precision", "fp32"))

    def run_graph(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def outputs_batch(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """images (B, S, S, 3) float32 in [0, 1] -> every graph output by name."""
        return self.run_graph(normalise(images, self.mean, self.std))

    def score_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, S, S, 3) float32 in [0, 1] -> scores (B,), maps (B, S, S)."""
        out = dict(self.outputs_batch(images))
        scores, maps = out.pop("score"), out.pop("anomaly_map")
        self.extra_outputs = out
        return np.asarray(scores, np.float32), np.asarray(maps, np.float32)

    def domain_batch(self, images: np.ndarray) -> np.ndarray | None:
        return self.run_batch(images).domain

    def run_batch(self, images: np.ndarray) -> Scored:
        """One graph run: scores, maps and (when checked) the graph's domain distances."""
        scores, maps = self.score_batch(images)
        domain = self.extra_outputs.get("domain_distance") if self.checks_domain else None
        return Scored(scores, maps, None if domain is None else np.asarray(domain, np.float32))


class OnnxDetector(GraphDetector):
    """An exported ONNX graph (fp32 or INT8) under onnxruntime."""

    runtime = "onnx"

    def __init__(self, session, sidecar: dict, info: CheckpointInfo, path: Path, batch_size=16):
        super().__init__(sidecar, info, path, batch_size)
        self.session = session
        on_gpu = "CUDAExecutionProvider" in session.get_providers()
        self.device = torch.device("cuda" if on_gpu else "cpu")
        self.output_names = [o.name for o in session.get_outputs()]
        self._find_guard(self.output_names)

    def run_graph(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {"image": x})
        return dict(zip(self.output_names, values, strict=True))


class OpenVinoDetector(GraphDetector):
    """An exported OpenVINO IR (fp32 or INT8) on the CPU plugin."""

    runtime = "openvino"

    def __init__(self, model, sidecar: dict, info: CheckpointInfo, path: Path, batch_size=16):
        super().__init__(sidecar, info, path, batch_size)
        self.model = model
        self._lock = threading.Lock()  # one infer request: one batch at a time
        self._find_guard(list(model.output_names))

    def run_graph(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            return self.model.run(x)


# what a run folder is searched for, per runtime: fp32 first, then INT8
RUN_FILES = {
    "onnx": (MODEL_NAME, "model-int8.onnx"),
    "openvino": ("openvino.xml", "openvino-int8.xml"),
}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}


def resolve_onnx_path(source: str | Path, runtime: str = "onnx") -> Path:
    """A run folder holding an export for `runtime` (fp32 preferred), or the path of a file."""
    path, names, suffix = Path(source), RUN_FILES[runtime], SUFFIX[runtime]
    fmt = f"--format {runtime}"
    if path.is_dir():
        found = [path / n for n in names if (path / n).is_file()]
        if not found:
            raise AnomedError(
                f"{source}: holds no {' or '.join(names)}. Fix: anomed export {source} {fmt} "
                f"(or pass the {suffix} file)."
            )
        return found[0]
    if path.suffix != suffix or not path.is_file():
        raise AnomedError(
            f"{source}: not an {suffix} file or a run folder holding {names[0]}. Fix: check the "
            f"path, or export first (anomed export RUN {fmt})."
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
    fmt = "openvino" if path.suffix == ".xml" else "onnx"
    fix = f"Fix: export again (anomed export RUN --format {fmt} -o {path} --overwrite)."
    try:
        sidecar = json.loads(side.read_text())
        expected = sidecar.get("graph_sha256") or sidecar["onnx_sha256"]
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
    """An `OnnxDetector` from a run folder (RUN/model.onnx, else RUN/model-int8.onnx) or an
    .onnx file with its sidecar."""
    path = resolve_onnx_path(source)
    sidecar = read_sidecar(path)
    info = from_dict(CheckpointInfo, sidecar["info"])
    detector = OnnxDetector(load_session(path, device, threads), sidecar, info, path, batch_size)
    detector.domain_check = check_mode(domain_check)
    return detector


def load_openvino_detector(
    source: str | Path,
    device: str = "auto",
    batch_size: int = 16,
    threads: int = 0,
    domain_check: str = "warn",
) -> OpenVinoDetector:
    """An `OpenVinoDetector` from a run folder (RUN/openvino.xml, else RUN/openvino-int8.xml)
    or an .xml file with its sidecar; CPU only."""
    from anomed.export.openvino import OpenVinoModel, check_device, import_openvino

    check_device(device)
    import_openvino()
    path = resolve_onnx_path(source, "openvino")
    sidecar = read_sidecar(path)
    info = from_dict(CheckpointInfo, sidecar["info"])
    detector = OpenVinoDetector(OpenVinoModel(path, threads), sidecar, info, path, batch_size)
    detector.domain_check = check_mode(domain_check)
    return detector


def load_graph_detector(
    source: str | Path,
    runtime: str,
    device: str = "auto",
    batch_size: int = 16,
    threads: int = 0,
    domain_check: str = "warn",
) -> GraphDetector:
    """The detector of an exported graph for `runtime` (onnx or openvino)."""
    if runtime == "openvino":
        return load_openvino_detector(source, device, batch_size, threads, domain_check)
    return load_onnx_detector(source, device, batch_size, threads, domain_check)


RUNTIMES = ("torch", "onnx", "openvino")


def load_runtime_detector(
    checkpoint: str | Path,
    runtime: str = "torch",
    device: str = "auto",
    batch_size: int = 16,
    compile_backbone: bool = False,
    domain_check: str = "warn",
) -> Detector:
    """The `Detector` of a run under `runtime`: torch (the checkpoint itself), onnx or openvino
    (its export, `anomed export`: a run folder holding one, or the exported file)."""
    if runtime not in RUNTIMES:
        raise AnomedError(f"--runtime {runtime}: use {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return load_detector(checkpoint, device, batch_size, compile_backbone, domain_check)
    if compile_backbone:
        raise AnomedError("--compile applies to the torch runtime only. Fix: drop --compile.")
    batch_size = coerce(Positive, batch_size, "batch_size")
    return load_graph_detector(checkpoint, runtime, device, batch_size, domain_check=domain_check)
