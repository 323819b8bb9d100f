"""The Python API: train a detector, evaluate it, load it and score images.

These are the CLI's jobs as functions; they take the same settings (`RunConfig` fields, or
dotted overrides such as {"train.epochs": 20}) and raise `AnomedError` on bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from anomed.config import RunConfig, from_dict, load_yaml, set_dotted, to_dict
from anomed.engine.detector import Detector, load_detector


def run_config(
    data: str | Path | None = None,
    method: str | None = None,
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> RunConfig:
    """A checked RunConfig: `config` (object, dict or YAML file), then keyword fields (`k`,
    `seed`, `epochs`, `output`, `preset`, ...), then dotted `overrides`."""
    if isinstance(config, RunConfig):
        base = to_dict(config)
    elif isinstance(config, (str, Path)):
        base = load_yaml(config)
    else:
        base = dict(config or {})
    keys = {
        "k": "data.k",
        "seed": "data.seed",
        "epochs": "train.epochs",
        "batch_size": "train.batch_size",
        "device": "train.device",
        "preset": "preset",
        "output": "output_dir",
        "model": "backbone.model",
        "pretrained": "backbone.pretrained",
        "image_size": "backbone.image_size",
    }
    if data is not None:
        set_dotted(base, "data.root", str(data))
    if method is not None:
        set_dotted(base, "method", method)
    for name, value in fields.items():
        if name not in keys:
            raise TypeError(f"unknown setting {name!r}; use one of {sorted(keys)} or overrides=")
        if name == "output":  # a Path as text; None: the default folder, never "None"
            value = "" if value is None else str(value)
        set_dotted(base, keys[name], value)
        if name == "seed":
            set_dotted(base, "train.seed", value)
    for key, value in (overrides or {}).items():
        set_dotted(base, key, value)
    from anomed.engine.run import validate_run_config

    return validate_run_config(from_dict(RunConfig, base))


def train(
    data: str | Path | None = None,
    method: str | None = None,
    *,
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
    **fields: Any,
):
    """Train a detector and save it; returns `engine.run.TrainArtifacts` (`.output_dir`,
    `.info.calibration`, `.fit`). Example: `anomed.train("data/phantom", k=16, seed=0)`."""
    from anomed.engine.run import train_run

    cfg = run_config(data, method, config, overrides, **fields)
    return train_run(cfg, progress=progress, log=log, overwrite=overwrite)


def evaluate(
    run: str | Path,
    data: str | Path | None = None,
    output: str | Path | None = None,
    *,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved run on a dataset's test split (default: its own); writes the reports
    and returns the metrics (fractions in [0, 1]; None where undefined)."""
    import json

    from anomed.engine.run import eval_run

    _, out = eval_run(
        run,
        None if data is None else str(data),
        output,
        device=device,
        progress=progress,
        overwrite=overwrite,
    )
    return json.loads((out / "metrics.json").read_text())


def load(
    run: str | Path, device: str = "auto", batch_size: int = 16, compile: bool = False
) -> Detector:
    """A saved run as a warm `Detector`: `.predict([paths or arrays])` -> `Prediction`s."""
    return load_detector(run, device, batch_size, compile_backbone=compile)
