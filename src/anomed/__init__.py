"""anomed: few-shot and zero-shot medical image anomaly detection with vision-language models.

The public API: build a frozen CLIP, a method on it, train, evaluate, predict.
"""

__version__ = "0.1.0"

from anomed.backbone import BackboneConfig, FrozenCLIP, load_backbone  # noqa: E402
from anomed.config import DataConfig, RunConfig, TrainConfig  # noqa: E402
from anomed.errors import AnomedError  # noqa: E402
from anomed.methods import METHODS, AnomalyMethod, AnomalyOutput, create_method  # noqa: E402

__all__ = [
    "METHODS",
    "AnomalyMethod",
    "AnomalyOutput",
    "AnomedError",
    "BackboneConfig",
    "DataConfig",
    "FrozenCLIP",
    "RunConfig",
    "TrainConfig",
    "__version__",
    "create_method",
    "load_backbone",
]
