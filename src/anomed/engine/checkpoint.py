"""Checkpoints: safetensors of the trained weights + a YAML of everything needed to rebuild.

Nothing is ever unpickled. A random-init backbone is not stored: it is rebuilt from its seed and
checked against a fingerprint, so checkpoints stay small and a mismatch fails loudly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anomed import __version__
from anomed.backbone import FrozenCLIP, load_backbone
from anomed.config import RunConfig, from_dict, load_yaml, to_dict
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod, create_method

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"


@dataclass
class Calibration:
    """Decision and display settings fixed on validation data, never on test data."""

    threshold: float = float("nan")  # an image scoring above it is called abnormal
    target_fpr: float = 0.05
    map_min: float = 0.0  # heatmap colour scale
    map_max: float = 1.0


@dataclass
class CheckpointInfo:
    """The YAML side of a checkpoint."""

    run: RunConfig
    calibration: Calibration = field(default_factory=Calibration)
    shots: list[str] = field(default_factory=list)  # support images, relative to the data root
    class_name: str = ""  # the dataset class/organ the detector was trained for
    backbone_fingerprint: float | None = None
    fit: dict[str, Any] = field(default_factory=dict)  # best epoch, selection mode, seconds
    anomed_version: str = __version__


def backbone_fingerprint(backbone: FrozenCLIP) -> float:
    """A cheap checksum of the frozen weights, to detect a backbone rebuilt differently."""
    total = 0.0
    for p in list(backbone.parameters())[:8]:
        total += float(p.detach().double().abs().sum())
    return total


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(directory: str | Path, method: AnomalyMethod, info: CheckpointInfo) -> Path:
    """Write `model.safetensors` and `config.yaml` into `directory` (each written atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info.run.method_args = to_dict(method.cfg)
    if info.run.backbone.pretrained is None and not info.run.backbone.model.startswith(
        "local-dir:"
    ):
        info.backbone_fingerprint = backbone_fingerprint(method.backbone)
    state = {k: v.detach().cpu().contiguous() for k, v in method.trainable_state_dict().items()}
    _atomic_write(directory / WEIGHTS, lambda tmp: save_file(state, tmp))
    text = _yaml_dump(to_dict(info))
    _atomic_write(directory / CONFIG, lambda tmp: Path(tmp).write_text(text))
    return directory


def _yaml_dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def read_checkpoint_info(directory: str | Path) -> CheckpointInfo:
    directory = Path(directory)
    if not directory.is_dir():
        raise AnomedError(
            f"{directory}: no such checkpoint folder. Fix: pass the output folder "
            "of `anomed train` (it holds model.safetensors and config.yaml)."
        )
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise AnomedError(f"{directory}: {name} is missing; not an anomed checkpoint.")
    return from_dict(CheckpointInfo, load_yaml(directory / CONFIG))


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[AnomalyMethod, CheckpointInfo]:
    """Rebuild the backbone and method from `config.yaml` and load the trained weights."""
    directory = Path(directory)
    info = read_checkpoint_info(directory)
    backbone = load_backbone(info.run.backbone, device)
    if info.backbone_fingerprint is not None:
        found = backbone_fingerprint(backbone)
        if abs(found - info.backbone_fingerprint) > 1e-6 * max(1.0, abs(found)):
            raise AnomedError(
                f"{directory}: the random-init backbone rebuilt from seed "
                f"{info.run.backbone.init_seed} differs from the one trained with (another torch "
                "version?). Fix: retrain with this installation."
            )
    method = create_method(info.run.method, backbone, info.run.method_args)
    method.class_name = info.class_name
    try:
        state = load_file(str(directory / WEIGHTS), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise AnomedError(f"{directory / WEIGHTS}: unreadable weights ({exc}).") from exc
    try:
        method.load_trainable_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        problem = f"{directory / WEIGHTS}: does not fit the method in config.yaml: {exc}"
        raise AnomedError(problem) from exc
    return method.to(device).eval(), info
