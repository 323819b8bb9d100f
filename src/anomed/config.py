"""Run configuration: dataclasses are the source of truth, YAML their file form.

A run is described by one `RunConfig`; the CLI builds it from flags and `--set a.b=value`
overrides, the checkpoint stores it, and `anomed predict` rebuilds the model from it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from anomed.backbone import BackboneConfig
from anomed.errors import AnomedError

T = TypeVar("T")


@dataclass
class DataConfig:
    """Which dataset, and which k-shot support set of it."""

    root: str = ""  # dataset folder (generic folder layout or samples-JSON layout)
    layout: str = "auto"  # "auto", "folder", "samples-json"
    k: int = 16  # normal shots
    k_abnormal: int | None = None  # labelled abnormal shots; None: k for supervised methods
    seed: int = 0  # seeds the shot draw; repeated runs use seeds 0, 1, 2
    n_val: int = 8  # validation images carved from the training pool (never from test)
    shots_file: str | None = None  # reuse a shot list written by an earlier run
    carve_abnormal_from_test: bool = False  # normal-only pools: draw abnormal shots from test
    train_roots: list[str] = field(default_factory=list)  # zero-shot: train on these instead


@dataclass
class TrainConfig:
    """The optimisation loop shared by all methods (methods set their own lr etc.)."""

    epochs: int | None = None  # None: the method's default
    batch_size: int | None = None  # None: the method's default
    device: str = "auto"  # "auto" picks cuda when available
    amp: bool = True  # bf16 autocast on GPU; ignored on CPU
    num_workers: int = 0
    val_every: int = 5  # epochs between validation passes
    select: str = "val"  # "val" (best validation score), "last", or "test-leak" (papers' habit)
    target_fpr: float = 0.05  # decision threshold = score quantile of validation normals
    seed: int = 0  # seeds initialisation and synthesis
    # Side-adapter methods: frozen features computed once (engine.cache); False = every epoch
    # runs the backbone on freshly synthesized anomalies.
    cache_features: bool = True
    cache_variants: int = 16  # synthesized epochs kept in the cache; later epochs cycle them
    cache_budget_gib: float = 4.0  # the cache shrinks its variants to fit; over it: no cache
    cache_batch_size: int = 32  # backbone batch while filling the cache
    compile: bool = False  # torch.compile the frozen transformer blocks (FrozenCLIP.compile_blocks)


@dataclass
class RunConfig:
    """Everything needed to train, evaluate and rebuild one detector."""

    method: str = "mediclip"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_args: dict[str, Any] = field(default_factory=dict)  # the method's own config
    output_dir: str = "runs/latest"


def to_dict(obj: Any) -> Any:
    """A dataclass tree -> plain dicts/lists (YAML-safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Plain dict -> dataclass `cls`, recursing into nested dataclasses; unknown keys are errors."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise AnomedError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(names)}")
    kwargs = {name: _coerce(hints[name], value) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return value if value is None or len(args) != 1 else _coerce(args[0], value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b", creating dicts on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise AnomedError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML scalars/lists) to a config dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AnomedError(f"--set {item!r}: expected key=value, e.g. train.epochs=20")
        set_dotted(data, key.strip(), yaml.safe_load(raw))
    return data


def save_yaml(path: str | Path, obj: Any) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise AnomedError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AnomedError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise AnomedError(f"{path}: expected a mapping at the top level")
    return data
