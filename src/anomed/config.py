"""Run configuration: dataclasses are the source of truth, YAML their file form.

A run is described by one `RunConfig`; the CLI builds it from flags and `--set a.b=value`
overrides, the checkpoint stores it, and `anomed predict` rebuilds the model from it.

Every field is checked here, in one place, against its type annotation: `Literal[...]` lists
the allowed values, `Annotated[int, Bounds(1)]` a range, `Annotated[str, Pattern(...)]` a form.
A wrong value fails with one `AnomedError` naming the field (`train.epochs`) and what it takes,
before any data are read. This module imports no torch, so the CLI can check a config at once.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import yaml

from anomed.errors import AnomedError

T = TypeVar("T")


class Bounds(NamedTuple):
    """Inclusive range of a numeric field (None: unbounded); `open_lo` excludes `lo`."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False

    def check(self, value: float) -> str | None:
        if self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo)):
            return f"{'>' if self.open_lo else '>='} {_num(self.lo)}"
        if self.hi is not None and value > self.hi:
            return f"<= {_num(self.hi)}"
        return None

    def describe(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.open_lo else '>='} {_num(self.lo)}")
        if self.hi is not None:
            parts.append(f"<= {_num(self.hi)}")
        return " and ".join(parts)


def _num(value: float) -> str:
    """A bound as written: whole numbers in full (4294967295, not 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Pattern(NamedTuple):
    """A string field must match `regex` entirely; `example` goes into the error message."""

    regex: str
    example: str


SEED_MAX = 2**32 - 1  # numpy's and torch's seeds both accept this range
Seed = Annotated[int, Bounds(0, SEED_MAX)]
Positive = Annotated[int, Bounds(1)]
DEVICE = Pattern(r"auto|cpu|cuda(:\d+)?|mps", "auto, cpu, cuda or cuda:1")
Preset = Literal["anomed", "reference", "paper"]


@dataclass
class BackboneConfig:
    """Which CLIP to load and how to feed it."""

    model: str = "anomed-tiny"  # open_clip name, or "hf-hub:org/repo", or "local-dir:/path"
    pretrained: str | None = None  # open_clip tag ("openai"), a local checkpoint file, or None
    # override of the input side; positional embeddings are interpolated
    image_size: Annotated[int | None, Bounds(32, 2048)] = None
    # pixel normalisation (backbone.PREPROCESS_PRESETS); None: the preset's choice for the
    # method ("clip" unless its reference feeds other pixels), resolved when a run starts
    preprocess: Literal["clip", "paper", "cxr"] | None = None
    init_seed: Seed = 0  # seeds a random-init backbone so it can be rebuilt identically


@dataclass
class DataConfig:
    """Which dataset, and which k-shot support set of it."""

    root: str = ""  # dataset folder (generic folder layout or samples-JSON layout)
    layout: str = "auto"  # "auto" or a registered layout (anomed.data.layouts.LAYOUTS)
    k: Annotated[int, Bounds(0)] = 16  # normal shots
    # labelled abnormal shots; None: k for supervised methods
    k_abnormal: Annotated[int | None, Bounds(0)] = None
    seed: Seed = 0  # seeds the shot draw; repeated runs use seeds 0, 1, 2
    n_val: Annotated[int, Bounds(0)] = 8  # validation images carved from the training pool
    shots_file: str | None = None  # reuse a shot list written by an earlier run
    carve_abnormal_from_test: bool = False  # normal-only pools: draw abnormal shots from test
    train_roots: list[str] = field(default_factory=list)  # zero-shot: train on these instead
    class_name: str = ""  # organ/class word for prompts; "" = from the dataset


@dataclass
class TrainConfig:
    """The optimisation loop shared by all methods (methods set their own lr etc.)."""

    epochs: Annotated[int | None, Bounds(1)] = None  # None: the method's default
    batch_size: Annotated[int | None, Bounds(1)] = None  # None: the method's default
    device: Annotated[str, DEVICE] = "auto"  # "auto" picks cuda when available
    amp: bool = True  # bf16 autocast on GPU; ignored on CPU
    num_workers: Annotated[int, Bounds(0, 64)] = 0
    val_every: Positive = 5  # epochs between validation passes
    # "val" (best validation score), "last", or "test-leak" (papers' habit; leaks test labels);
    # None: the preset's choice for the method ("val" unless its reference keeps the last epoch)
    select: Literal["val", "last", "test-leak"] | None = None
    # decision threshold = score quantile of validation normals at this false-positive rate
    target_fpr: Annotated[float, Bounds(0.0, 1.0)] = 0.05
    # no validation images (k takes the whole pool): save without a threshold (decisions then
    # read "uncalibrated") instead of refusing to train
    allow_uncalibrated: bool = False
    seed: Seed = 0  # seeds initialisation and synthesis
    # Side-adapter methods: frozen features computed once (engine.cache); False = every epoch
    # runs the backbone on freshly synthesized anomalies.
    cache_features: bool = True
    cache_variants: Positive = 16  # synthesized epochs kept in the cache; later ones cycle
    # the cache shrinks its variants to fit; over it: no cache
    cache_budget_gib: Annotated[float, Bounds(0.0, None, open_lo=True)] = 4.0
    cache_batch_size: Positive = 32  # backbone batch while filling the cache
    compile: bool = False  # torch.compile the frozen transformer blocks (FrozenCLIP.compile_blocks)


@dataclass
class RunConfig:
    """Everything needed to train, evaluate and rebuild one detector."""

    method: str = "mediclip"
    # whose computation the method follows where anomed, the reference code and the paper
    # differ: "anomed" (the better choice on evidence), "reference" (the published code) or
    # "paper" (the paper's text where explicit); see FIDELITY.md
    preset: Preset = "anomed"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_args: dict[str, Any] = field(default_factory=dict)  # the method's own config
    output_dir: str = ""  # "" = runs/<method>-<dataset>-k<k>-s<seed>


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


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Plain dict -> dataclass `cls`, every value checked against its field's annotation.

    `where` prefixes field names in messages ("method_args." -> "method_args.image_loss").
    Unknown keys and wrong values raise one AnomedError naming the field and what it takes.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AnomedError(f"{where.rstrip('.') or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        close = [_close_match(k, names) for k in unknown]
        hint = "".join(f" (did you mean {c!r}?)" for c in close if c)
        raise AnomedError(
            f"unknown {cls.__name__} keys {[where + k for k in unknown]}{hint}; known: {names}"
        )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise AnomedError(f"{cls.__name__} needs the keys {[where + m for m in missing]}")
    kwargs = {name: coerce(hints[name], value, where + name) for name, value in data.items()}
    return cls(**kwargs)


def _close_match(word: str, options: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return found[0] if found else None


def coerce(hint: Any, value: Any, where: str) -> Any:
    """`value` checked (and converted where lossless: list -> tuple, 3 -> 3.0) to type `hint`."""
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        value = coerce(base, value, where)
        for extra in extras:
            _check_extra(extra, value, where)
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if hint is Any or hint is typing.Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(option, value, where)
            except AnomedError as exc:
                errors.append(str(exc))
        raise AnomedError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not valid")
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise AnomedError(f"{where}: {value!r} is not allowed; choose one of {allowed}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise AnomedError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise AnomedError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [
                coerce(a, v, f"{where}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        else:
            item = args[0] if args else Any
            items = [coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise AnomedError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise AnomedError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise AnomedError(f"{where}: expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise AnomedError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise AnomedError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise AnomedError(f"{where}: expected a text value, got {value!r}")
    return value


def _check_extra(extra: Any, value: Any, where: str) -> None:
    if value is None:
        return
    if isinstance(extra, Bounds) and (problem := extra.check(value)) is not None:
        raise AnomedError(f"{where}: {value!r} is out of range; it must be {problem}")
    if isinstance(extra, Pattern) and not re.fullmatch(extra.regex, str(value)):
        raise AnomedError(f"{where}: {value!r} is not valid; use {extra.example}")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b", creating dicts on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            section = ".".join(parts[: i + 1])
            raise AnomedError(
                f"{key}: {section} is {node!r}, not a section of settings. Fix: make {section} "
                "a mapping of key: value settings in the config, or drop that value."
            )
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML scalars/lists) to a config dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise AnomedError(f"--set {item!r}: expected key=value, e.g. train.epochs=20")
        try:
            value = safe_yaml(raw, f"--set {key.strip()}")
        except AnomedError:
            value = raw  # not YAML: the plain text (its field's type check decides)
        set_dotted(data, key.strip(), value)
    return data


def save_yaml(path: str | Path, obj: Any) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


MAX_CONFIG_BYTES = 1 << 20  # a run config is a few kB; more is not a config


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file (safe loader: no tags run; aliases refused: no bombs)."""
    path = Path(path)
    if path.is_dir():
        raise AnomedError(f"{path}: a folder, not a config file. Fix: pass the YAML file in it.")
    if not path.is_file():
        raise AnomedError(f"{path}: no such config file. Fix: check the path.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise AnomedError(
            f"{path}: {path.stat().st_size} bytes is too large for a config file (limit "
            f"{MAX_CONFIG_BYTES}). Fix: pass the run's YAML config, a few kB of key: value lines."
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnomedError(
            f"{path}: unreadable config ({exc}). Fix: save it as UTF-8 text."
        ) from exc
    data = safe_yaml(text, str(path))
    if not isinstance(data, dict):
        raise AnomedError(f"{path}: expected a mapping (key: value lines) at the top level")
    return data


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases: a config never needs them, and nested aliases
    expand exponentially (the 'billion laughs' bomb)."""

    def compose_node(self, parent, index):  # noqa: ANN001
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in anomed configs", event.start_mark
            )
        return super().compose_node(parent, index)


def safe_yaml(text: str, where: str) -> Any:
    """YAML text parsed with the safe loader, anchors/aliases and deep nesting refused; any
    failure is one AnomedError naming `where`."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise AnomedError(
            f"{where}: not valid YAML ({exc}). Fix: correct it there; configs are plain YAML "
            "(no !!tags, no &anchors/*aliases)."
        ) from exc
    except RecursionError as exc:  # thousands of nested [[[...]]]: no config is that deep
        raise AnomedError(
            f"{where}: YAML nested too deeply to be a config. Fix: pass a config of key: value "
            "lines."
        ) from exc
