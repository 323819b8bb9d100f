"""`anomed export --format onnx`: a trained detector as one ONNX graph, checked before it is kept.

The file takes a *normalised* image batch and returns the anomaly map and image score:

- input  `image`       float32 (B, 3, S, S), RGB, `(pixel in [0, 1] - mean) / std`
- output `anomaly_map` float32 (B, S, S), the same map the PyTorch detector gives
- output `score`       float32 (B,), compared with the calibrated threshold (above: abnormal)
- output `domain_distance` float32 (B,), distance to the training domain (`anomed.engine.domain`;
  above `domain_threshold`: outside it), present when the checkpoint recorded its domain

mean, std, S, the threshold, the heatmap range, the method and the preset are in the model's
metadata (`anomed.*` keys) and in a JSON sidecar beside it (`model.onnx` -> `model.json`), which
also holds the checkpoint's settings, so `OnnxDetector` needs nothing else.

Before the file is kept, onnxruntime (CPU, fp32) scores 8 images (the run's test images when
its dataset is there, else seeded random ones) and the largest differences from PyTorch are
reported; above `TOLERANCE` nothing is written. The graph is traced with a batch of 2 and
checked with a batch of 8, which proves the batch axis is really dynamic.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anomed._version import __version__
from anomed.data.datasets import load_sample
from anomed.engine.checkpoint import CheckpointInfo
from anomed.engine.domain import DomainGuard, domain_features
from anomed.errors import AnomedError
from anomed.export.graph import freeze_for_export
from anomed.methods.base import AnomalyMethod

OPSET = 17
TOLERANCE = 1e-3  # max abs difference ONNX vs PyTorch (fp32) on maps and on scores
MODEL_NAME = "model.onnx"
CHECK_IMAGES = 8
_EXTERNAL_ABOVE = 1_800_000_000  # bytes of weights above which they go to a .data file


def sidecar_path(onnx_path: str | Path) -> Path:
    """`model.onnx` -> `model.json`: the settings written beside the graph."""
    return Path(onnx_path).with_suffix(".json")


def _import_runtime():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise AnomedError(
            f"ONNX export and runtime need onnx and onnxruntime ({exc}). "
            "Fix: pip install 'anomed[export]'."
        ) from exc
    return onnx, onnxruntime


def _pixel_stats(method: AnomalyMethod) -> tuple[np.ndarray, np.ndarray]:
    """The backbone preset's mean and std, (3,) float32 each."""
    bb = method.backbone
    return (
        bb.pixel_mean.detach().cpu().reshape(3).numpy().astype(np.float32),
        bb.pixel_std.detach().cpu().reshape(3).numpy().astype(np.float32),
    )


def normalise(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """images (B, S, S, 3) in [0, 1] -> the graph input (B, 3, S, S) float32."""
    x = np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2))
    return ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)


# ---- tracing -----------------------------------------------------------------------------------


class GuardedGraph(torch.nn.Module):
    """The method's graph plus the domain guard on the same normalised input: the guard's
    features come from a plain pass of the frozen backbone on the un-normalised pixels."""

    def __init__(self, graph: torch.nn.Module, guard: DomainGuard, method: AnomalyMethod):
        super().__init__()
        self.graph, self.guard, self.backbone = graph, guard, method.backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        amap, score = self.graph(x)
        pixels = x * self.backbone.pixel_std + self.backbone.pixel_mean  # (B, 3, S, S) in [0, 1]
        return amap, score, self.guard(domain_features(self.backbone, pixels))


def trace_to_onnx(
    method: AnomalyMethod,
    path: Path,
    opset: int = OPSET,
    copy: bool = True,
    guard: DomainGuard | None = None,
) -> None:
    """Fold `method` (see export.graph) and write its graph to `path` with a dynamic batch axis;
    with `guard`, the graph also outputs `domain_distance`.

    Uses the TorchScript-based exporter (`dynamo=False`): it handles open_clip's attention and
    the unrolled memory-bank search, and needs no extra package."""
    _import_runtime()
    if opset < 17:
        raise AnomedError(f"--opset {opset}: anomed exports with opset 17 or newer")
    graph = freeze_for_export(method, copy=copy)
    names = ["anomaly_map", "score"]
    if guard is not None:
        graph = GuardedGraph(graph, guard.cpu().eval(), method).eval()
        names.append("domain_distance")
    size = method.backbone.image_size
    dummy = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    axes = {"image": {0: "batch"}, **{name: {0: "batch"} for name in names}}
    with warnings.catch_warnings(), torch.no_grad(), _silenced_fds(), _no_mha_fastpath():
        warnings.simplefilter("ignore")  # tracer notes on Python constants, exporter deprecation
        torch.onnx.export(
            graph,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=names,
            dynamic_axes=axes,
            do_constant_folding=True,
        )


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention's inference fast path (the real CLIP towers: ViT-B-16, ViT-L-14)
    traces to `aten::_native_multi_head_attention`, which has no ONNX operator; the plain path
    computes the same attention in exportable ops."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


@contextlib.contextmanager
def _silenced_fds() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null: the exporter's C++ side prints the whole
    TorchScript graph when a node fails (the failure itself still raises, as one line)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _metadata(method: AnomalyMethod, info: CheckpointInfo) -> dict[str, str]:
    mean, std = _pixel_stats(method)
    cal = info.calibration
    values = {
        "version": __version__,
        "method": info.run.method,
        "preset": info.run.preset,
        "class_name": info.class_name,
        "image_size": method.backbone.image_size,
        "input": "image: float32 (B, 3, S, S) RGB, (pixel in [0, 1] - mean) / std",
        "outputs": "anomaly_map: float32 (B, S, S); score: float32 (B,), abnormal if > threshold",
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "threshold": cal.threshold,
        "map_range": [cal.map_min, cal.map_max],
        "domain_threshold": None if info.domain is None else info.domain.threshold,
    }
    return {f"anomed.{k}": json.dumps(v) for k, v in values.items()}


def _finish_model(path: Path, metadata: dict[str, str], external_above: int) -> None:
    """Add metadata, check the graph, and save it as one file (weights beside it in
    `<name>.data` when they pass `external_above` bytes: protobuf's 2 GiB limit)."""
    onnx, _ = _import_runtime()
    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "anomed", __version__
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    for stale in path.parent.iterdir():  # the exporter's per-tensor files, if any
        if stale != path:
            stale.unlink()
    external = weights > external_above
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
    )
    onnx.checker.check_model(str(path))


# ---- self-check --------------------------------------------------------------------------------


@dataclass
class SelfCheck:
    """ONNX Runtime (CPU, fp32) against PyTorch on the same images."""

    images: str  # where the images came from
    n_images: int
    max_map_diff: float
    max_score_diff: float
    decisions_equal: int | None  # images whose decision agrees (None: no threshold)
    tolerance: float = TOLERANCE
    runtime: str = "onnxruntime CPU, fp32"
    max_domain_diff: float | None = None  # relative, domain_distance (None: no guard)

    @property
    def passed(self) -> bool:
        diffs = (self.max_map_diff, self.max_score_diff, self.max_domain_diff or 0.0)
        return all(np.isfinite(d) and d <= self.tolerance for d in diffs)

    def line(self) -> str:
        verdict = "ok" if self.passed else f"FAILED (> {self.tolerance:g})"
        agree = (
            f", {self.decisions_equal}/{self.n_images} decisions equal"
            if self.decisions_equal is not None
            else ""
        )
        domain = (
            f", max relative domain distance diff {self.max_domain_diff:.2e}"
            if self.max_domain_diff is not None
            else ""
        )
        return (
            f"self-check on {self.images} ({self.runtime}): max |map "
            f"diff| {self.max_map_diff:.2e}, max |score diff| {self.max_score_diff:.2e}"
            f"{domain}{agree} -> {verdict}"
        )


def check_images(info: CheckpointInfo | None, size: int, n: int = CHECK_IMAGES):
    """(images (n, S, S, 3) float32 in [0, 1], description): the run's test images (abnormal
    and normal alternating) when its dataset can be read, topped up with seeded random images."""
    picked = []
    if info is not None and info.run.data.root:
        try:
            from anomed.engine.run import load_splits

            test = load_splits(info.run, log=lambda _: None).test
            normal = [s for s in test if s.label == 0]
            abnormal = [s for s in test if s.label != 0]
            order = [s for pair in zip(abnormal, normal, strict=False) for s in pair]
            order += [s for s in test if s not in order]
            picked = [load_sample(s, size)[0] for s in order[:n]]
        except (AnomedError, OSError, ValueError):
            picked = []  # the dataset is elsewhere now: random images still check the graph
    rng = np.random.default_rng(0)
    extra = [rng.random((size, size, 3), dtype=np.float32) for _ in range(n - len(picked))]
    parts = [f"{len(picked)} test"] if picked else []
    parts += [f"{len(extra)} random"] if extra else []
    return np.stack(picked + extra).astype(np.float32), " + ".join(parts) + " images"


@torch.no_grad()
def torch_outputs(method: AnomalyMethod, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch fp32 on CPU: (scores (B,), maps (B, S, S)), as `Detector.score_batch`."""
    batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
    out = method.eval()(batch.to(method.backbone.pixel_mean.device))
    return out.image_score.float().cpu().numpy(), out.anomaly_map.float().cpu().numpy()


@torch.no_grad()
def torch_domain(method: AnomalyMethod, guard: DomainGuard | None, images: np.ndarray):
    """PyTorch fp32 domain distances (B,) as `Detector.domain_batch`; None without a guard."""
    if guard is None:
        return None
    batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
    return guard(domain_features(method.backbone, batch)).numpy()


def self_check(
    path: Path, reference: tuple[np.ndarray, np.ndarray], images: np.ndarray, meta: dict
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Run the file at `path` on `images`: (scores, maps, max |map diff|, max |score diff|)."""
    _, ort = _import_runtime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = normalise(images, np.array(meta["mean"], np.float32), np.array(meta["std"], np.float32))
    maps, scores = session.run(["anomaly_map", "score"], {"image": x})
    ref_scores, ref_maps = reference[:2]
    if maps.shape != ref_maps.shape or scores.shape != ref_scores.shape:
        return scores, maps, float("inf"), float("inf")
    return (
        scores,
        maps,
        float(np.abs(maps - ref_maps).max()),
        float(np.abs(scores - ref_scores).max()),
    )
