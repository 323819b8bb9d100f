"""anomed: few-shot and zero-shot medical image anomaly detection with vision-language models.

The Python API (see the README's "From Python"):

    import anomed
    run = anomed.train("data/phantom", method="mediclip", k=16, output="runs/p16")
    metrics = anomed.evaluate("runs/p16")
    detector = anomed.load("runs/p16")
    predictions = detector.predict(["scan.png", image_array])

Names are imported on first use, so `import anomed` (and `anomed --help`) loads no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from anomed._version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "train": "anomed.api",
    "evaluate": "anomed.api",
    "load": "anomed.api",
    "Detector": "anomed.engine.detector",
    "Prediction": "anomed.engine.detector",
    "AnomedError": "anomed.errors",
    "BackboneConfig": "anomed.config",
    "DataConfig": "anomed.config",
    "RunConfig": "anomed.config",
    "TrainConfig": "anomed.config",
    "FrozenCLIP": "anomed.backbone",
    "load_backbone": "anomed.backbone",
    "METHODS": "anomed.methods",
    "AnomalyMethod": "anomed.methods",
    "AnomalyOutput": "anomed.methods",
    "create_method": "anomed.methods",
}

__all__ = [
    "METHODS",
    "AnomalyMethod",
    "AnomalyOutput",
    "AnomedError",
    "BackboneConfig",
    "DataConfig",
    "Detector",
    "FrozenCLIP",
    "Prediction",
    "RunConfig",
    "TrainConfig",
    "__version__",
    "create_method",
    "evaluate",
    "load",
    "load_backbone",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'anomed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs only
    from anomed.api import evaluate, load, train
    from anomed.backbone import FrozenCLIP, load_backbone
    from anomed.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
    from anomed.engine.detector import Detector, Prediction
    from anomed.errors import AnomedError
    from anomed.methods import METHODS, AnomalyMethod, AnomalyOutput, create_method
