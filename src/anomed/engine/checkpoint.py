"""Checkpoints: safetensors of the trained weights + a YAML of everything needed to rebuild.

Nothing is ever unpickled. A random-init backbone is not stored: it is rebuilt from its seed and
checked against a fingerprint, so checkpoints stay small and a mismatch fails loudly.
`manifest.json` (written last) holds the SHA-256 of both files: a folder whose files do not
match it (an interrupted or mixed write, a hand edit) is refused, as are non-finite weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anomed._version import __version__
from anomed.backbone import FrozenCLIP, load_backbone
from anomed.config import Bounds, RunConfig, from_dict, load_yaml, to_dict
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod, create_method
from anomed.outputs import interrupted_swap, temp_sibling

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
MANIFEST = "manifest.json"


@dataclass
class Calibration:
    """Decision and display settings fixed on validation data, never on test data."""

    threshold: float | None = None  # above it an image is abnormal; None: saved uncalibrated
    target_fpr: Annotated[float, Bounds(0.0, 1.0)] = 0.05
    map_min: float | None = None  # heatmap colour scale (None: each picture's own range)
    map_max: float | None = None


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
    tmp = str(temp_sibling(path))  # not mkstemp: its 0600 mode would stay on the file
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
    manifest = {name: sha256_file(directory / name) for name in (WEIGHTS, CONFIG)}
    payload = json.dumps({"anomed_version": __version__, "sha256": manifest}, indent=1)
    _atomic_write(directory / MANIFEST, lambda tmp: Path(tmp).write_text(payload))
    return directory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_manifest(directory: Path) -> None:
    """Refuse a checkpoint whose files are not the ones written together (see module doc)."""
    path = directory / MANIFEST
    fix = "Fix: retrain into this folder (anomed train ... --overwrite)."
    if not path.is_file():
        raise AnomedError(
            f"{directory}: {MANIFEST} is missing, so the weights and config.yaml cannot be "
            f"checked to belong together (an interrupted save, or a copy of part). {fix}"
        )
    try:
        expected = json.loads(path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise AnomedError(f"{path}: unreadable manifest ({exc}). {fix}") from exc
    for name in (WEIGHTS, CONFIG):
        if not isinstance(expected, dict) or expected.get(name) != sha256_file(directory / name):
            raise AnomedError(
                f"{directory / name}: does not match {MANIFEST} (written by another save, or "
                f"edited). {fix}"
            )


def _yaml_dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def read_checkpoint_info(directory: str | Path) -> CheckpointInfo:
    directory = Path(directory)
    if not directory.is_dir():
        previous = interrupted_swap(directory)
        if previous is not None and not directory.exists():
            raise AnomedError(
                f"{directory}: missing, but an interrupted save left the previous run at "
                f"{previous}. Fix: move it back (mv '{previous}' '{directory}'), or retrain."
            )
        raise AnomedError(
            f"{directory}: no such checkpoint folder. Fix: pass the output folder "
            "of `anomed train` (it holds model.safetensors and config.yaml)."
        )
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise AnomedError(
                f"{directory}: {name} is missing (or not a regular file); not an anomed "
                "checkpoint. Fix: pass the output folder of `anomed train`, or retrain into it."
            )
    verify_manifest(directory)
    try:
        info = from_dict(CheckpointInfo, load_yaml(directory / CONFIG))
    except AnomedError as exc:
        where = str(directory / CONFIG)
        raise AnomedError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from exc
    cal = info.calibration
    if cal.map_min is not None and cal.map_max is not None and cal.map_min >= cal.map_max:
        raise AnomedError(
            f"{directory / CONFIG}: calibration.map_min {cal.map_min} is not below map_max "
            f"{cal.map_max}. Fix: retrain into this folder (anomed train ... --overwrite)."
        )
    return info


def _rebuilt_differs(backbone: FrozenCLIP, info: CheckpointInfo) -> bool:
    """True when the backbone rebuilt from config.yaml is not the one the run trained with."""
    if info.backbone_fingerprint is None:
        return False
    found = backbone_fingerprint(backbone)
    return abs(found - info.backbone_fingerprint) > 1e-6 * max(1.0, abs(found))


def _backbone_mismatch(directory: Path, info: CheckpointInfo, how: str) -> str:
    """Say what mismatched: the backbone config.yaml describes vs the one trained with."""
    bb = info.run.backbone
    return (
        f"{directory / CONFIG}: the backbone it describes (backbone.model {bb.model!r}, "
        f"pretrained {bb.pretrained or 'none (random-init)'}, init_seed {bb.init_seed}) is not "
        f"the one these trained weights were made with ({how}): its backbone settings were "
        "changed after training, or (same settings) this installation initialises the "
        "random-init backbone differently. Fix: restore the backbone settings the run was "
        "trained with, or retrain into this folder (anomed train ... --overwrite)."
    )


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The trained weights, refused when unreadable or not finite."""
    try:
        state = load_file(str(directory / WEIGHTS), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise AnomedError(
            f"{directory / WEIGHTS}: unreadable weights ({exc}). Fix: retrain into this folder "
            "(anomed train ... --overwrite)."
        ) from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise AnomedError(
            f"{directory / WEIGHTS}: non-finite (NaN/Inf) values in {bad[:3]}; the training "
            "diverged or the file is damaged. Fix: retrain (e.g. with a lower learning rate)."
        )
    return state


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[AnomalyMethod, CheckpointInfo]:
    """Rebuild the backbone and method from `config.yaml` and load the trained weights."""
    directory = Path(directory)
    info = read_checkpoint_info(directory)
    backbone = load_backbone(info.run.backbone, device)
    rebuilt_differs = _rebuilt_differs(backbone, info)
    try:
        method = create_method(info.run.method, backbone, info.run.method_args, info.run.preset)
    except AnomedError as exc:
        raise AnomedError(f"{directory / CONFIG}: {exc}") from exc
    method.set_class_name(info.class_name)
    state = _read_weights(directory)
    try:
        method.load_trainable_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        if rebuilt_differs:  # the weights were trained on another backbone than config's
            how = f"the weights do not fit it: {str(exc)[:300]}"
            raise AnomedError(_backbone_mismatch(directory, info, how)) from exc
        problem = (
            f"{directory / WEIGHTS}: does not fit the method in config.yaml: {exc}. Fix: "
            "retrain into this folder (anomed train ... --overwrite)."
        )
        raise AnomedError(problem) from exc
    if rebuilt_differs:
        raise AnomedError(_backbone_mismatch(directory, info, "its weights' checksum differs"))
    return method.to(device).eval(), info
