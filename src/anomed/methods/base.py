"""What every method is: a frozen backbone plus trainable parts, one typed output in all modes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from anomed.backbone import FrozenCLIP
from anomed.config import Bounds, from_dict
from anomed.data.datasets import (
    SupportSet,
    SynthesisDataset,
    Synthesizer,
    augmented_items,
    plain_items,
    synthetic_validation_set,
)
from anomed.errors import AnomedError
from anomed.prompts.cache import TextCache
from anomed.registry import Registry

METHODS: Registry[type[AnomalyMethod]] = Registry("method")


class AnomalyOutput(NamedTuple):
    """A detector's answer for a batch, in training and evaluation alike."""

    anomaly_map: Tensor  # (B, H, W) abnormality per pixel at the input size
    image_score: Tensor  # (B,) abnormality of the whole image
    # raw components the method's `finalize_test` combines once the whole set is seen (batch
    # first, e.g. MVFA's text and memory-bank maps for min-max over the test set); None: final
    parts: dict[str, Tensor] | None = None


@dataclasses.dataclass
class MethodConfig:
    """Fields every method's config has; methods subclass it with their own."""

    epochs: Annotated[int, Bounds(0)] = 50
    batch_size: Annotated[int, Bounds(0)] = 8  # 0: all training items in one batch
    lr: Annotated[float, Bounds(0.0, None, open_lo=True)] = 1e-3


class AnomalyMethod(nn.Module):
    """Base of all methods. Subclasses set `name`, `config_class` and implement the hooks.

    The backbone is a registered submodule (so `.to()` moves it) but it is frozen and left out
    of `trainable_state_dict`, which is what checkpoints store.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    normal_only: ClassVar[bool] = True  # trains on normal shots only (synthesized anomalies)
    # Trainable parts read only frozen features (side adapters): the engine may compute those
    # once per training image and skip the backbone in later epochs (see engine.cache).
    cacheable: ClassVar[bool] = False
    # Image scores are probabilities in [0, 1] (so the papers' 0.5 rule means something).
    probability_scores: ClassVar[bool] = False
    # Needs at least one few-shot image of the target (False: works zero-shot from text alone).
    needs_shots: ClassVar[bool] = True
    # Scores with text prompts, so needs a backbone with a text tower (False: image-only works).
    needs_text: ClassVar[bool] = True
    # Whose computation to follow where anomed, the reference code and the paper differ: per
    # preset ("reference", "paper"), config values that replace the defaults (the defaults are
    # the "anomed" preset). Dotted keys ("backbone.preprocess", "train.select") are run-level
    # defaults, used where the run leaves the field unset. Explicit method_args always win.
    # Every entry is written down in FIDELITY.md.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # What the zero-shot protocol sets unless the user did (MVFA's zero-shot learning rate).
    zero_shot_args: ClassVar[dict[str, Any]] = {"lr": 1e-4}

    def __init__(self, backbone: FrozenCLIP, cfg: MethodConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.class_name = ""  # the target dataset's class/organ name (prompts may use it)
        self.support: SupportSet | None = None  # the few-shot support set, if any
        self.text_cache = TextCache()  # the one memo of class text features (see prompts.cache)

    # ---- lifecycle ----------------------------------------------------------------------
    def setup(
        self,
        supports: Sequence[SupportSet],
        class_name: str,
        validation: SupportSet | None = None,
        target: SupportSet | None = None,
        seed: int = 0,
    ) -> None:
        """Called once by the engine before training: the training sets (one per dataset), the
        target's class/organ word, its validation set, its own few-shot set (None in the
        zero-shot protocol), which methods with a memory bank of normals keep, and the run's
        training seed (for draws made once per run)."""
        self.class_name = class_name
        self.support = target

    def set_class_name(self, class_name: str) -> None:
        """Point the prompts at another dataset's class/organ word (cross-dataset evaluation)."""
        self.class_name = class_name

    # ---- data ---------------------------------------------------------------------------
    def train_dataset(self, supports: Sequence[SupportSet], seed: int) -> Dataset:
        """The training set built from one support set per training dataset.

        Few-shot runs pass one; the zero-shot protocol passes the other datasets' sets.
        Items carry "dataset" (index into `supports`) when a method needs it.
        """
        raise NotImplementedError

    def validation_items(self, support: SupportSet, seed: int) -> list[dict]:
        """Fixed validation items (see data.datasets) used to select the epoch and calibrate."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Refresh what depends on the trained weights and `self.support` (memory banks).

        Called before each validation pass and after training; a no-op for most methods.
        """

    def on_optimizer_step(self) -> None:
        """Called by the training loop after every optimizer step: what was memoised from the
        weights (class text features) is stale now."""
        self.text_cache.invalidate()

    def finalize_test(
        self, maps: np.ndarray, scores: np.ndarray, parts: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Final (maps (N, H, W), scores (N,)) of an evaluated set, given the raw `parts` every
        batch returned in `AnomalyOutput.parts` (concatenated). Methods whose outputs need
        statistics of the whole set (the references' min-max over the test set) combine them
        here; by default the outputs are final and returned unchanged."""
        return maps, scores

    # ---- frozen features ----------------------------------------------------------------
    def frozen_features(self, images: Tensor) -> dict[str, Tensor]:
        """What the frozen backbone hands the trainable parts, computed without gradients.

        Only `cacheable` methods implement it; every value has the batch as its first dim.
        """
        raise NotImplementedError(f"{self.name} does not expose frozen features")

    def forward_features(self, features: dict[str, Tensor], size: tuple[int, int]) -> AnomalyOutput:
        """`forward` from frozen features (cached validation sets); `size` = input (H, W)."""
        raise NotImplementedError(f"{self.name} does not expose frozen features")

    def batch_features(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch's frozen features: the cached ones it carries, else computed from images."""
        return self.frozen_features(batch["image"]) if "image" in batch else batch

    # ---- training -----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Losses for one batch; the key "loss" is minimised."""
        raise NotImplementedError

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.trainable_parameters(), lr=self.cfg.lr)

    def configure_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """A learning-rate schedule stepped once per optimizer step (None: constant)."""
        return None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        self.text_cache.invalidate()
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit: missing {missing}, unexpected {unexpected}")

    def text_scoring(self, choice: str) -> str:
        """A method's `text_scoring` switch resolved on its backbone: "auto" is how the backbone
        was trained (softmax for CLIP, sigmoid with a bias for SigLIP); "sigmoid" needs a bias."""
        if choice == "auto":
            return self.backbone.text_scoring
        if choice == "sigmoid" and self.backbone.logit_bias is None:
            raise AnomedError(
                f"method_args.text_scoring: sigmoid needs a backbone trained with a sigmoid "
                f"(SigLIP's logit bias); {self.backbone.cfg.model} has none. Fix: use auto."
            )
        return choice

    def train(self, mode: bool = True) -> AnomalyMethod:
        super().train(mode)
        self.backbone.train(False)
        return self

    # ---- inference ----------------------------------------------------------------------
    def forward(self, images: Tensor) -> AnomalyOutput:
        """images: (B, 3, H, W) in [0, 1] -> AnomalyOutput."""
        raise NotImplementedError


PRESETS = ("anomed", "reference", "paper")
RUN_DEFAULTS = {"backbone.preprocess": "clip", "train.select": "val"}  # when no preset says


def preset_values(name: str, preset: str = "anomed") -> dict[str, Any]:
    """The method config values a preset sets (run-level dotted keys left out)."""
    table = METHODS.get(name).presets.get(preset, {})
    return {k: v for k, v in table.items() if "." not in k}


def run_defaults(name: str, preset: str = "anomed") -> dict[str, Any]:
    """Run-level defaults ("backbone.preprocess", "train.select") of a method under a preset."""
    table = METHODS.get(name).presets.get(preset, {})
    return {**RUN_DEFAULTS, **{k: v for k, v in table.items() if "." in k}}


def method_args(
    name: str, args: dict[str, Any] | None = None, preset: str = "anomed"
) -> dict[str, Any]:
    """The preset's values with the explicit `args` on top (what the config is built from)."""
    return {**preset_values(name, preset), **(args or {})}


def backbone_refusal(name: str, model: str, has_text: bool | None = None) -> None:
    """Raise the one-line reason a method cannot run on a backbone (before any data is read):
    text-prompt methods on an image-only model. `has_text` None: judged from the model name."""
    if has_text is None:
        has_text = not model.startswith("timm:")
    if METHODS.get(name).needs_text and not has_text:
        raise AnomedError(
            f"{name} cannot run on {model}: it scores images against text prompts and this "
            "model has no text tower. Fix: use memorybank, or a vision-language backbone "
            "(e.g. a BiomedCLIP or SigLIP local-dir)."
        )


def create_method(
    name: str, backbone: FrozenCLIP, args: dict[str, Any] | None = None, preset: str = "anomed"
) -> AnomalyMethod:
    """Build a registered method on a backbone from its config dict (unknown keys are errors);
    the preset's values fill what `args` leaves out."""
    cls = METHODS.get(name)
    backbone_refusal(name, backbone.cfg.model, backbone.has_text)
    cfg = from_dict(cls.config_class, method_args(name, args, preset), "method_args.")
    return cls(backbone, cfg)


def method_config_dict(
    name: str, args: dict[str, Any] | None = None, preset: str = "anomed"
) -> dict[str, Any]:
    """The full config of a method (preset and defaults filled in) as a plain dict."""
    from anomed.config import to_dict

    cls = METHODS.get(name)
    return to_dict(from_dict(cls.config_class, method_args(name, args, preset), "method_args."))


class SynthesisMethod(AnomalyMethod):
    """Shared plumbing of methods trained on normal shots with synthesized anomalies (MediCLIP,
    CondPrompt): subclasses set `self.synthesizer`; `cfg.repeats` (default 1) items per shot."""

    synthesizer: Synthesizer

    def train_dataset(self, supports: Sequence[SupportSet], seed: int) -> SynthesisDataset:
        normals = [im for support in supports for im in support.normals]
        length = len(normals) * getattr(self.cfg, "repeats", 1)
        return SynthesisDataset(normals, self.synthesizer, length, seed)

    def validation_items(self, support: SupportSet, seed: int) -> list[dict]:
        return synthetic_validation_set(support.normals, self.synthesizer, seed)


class LabelledShotsMethod(AnomalyMethod):
    """Shared plumbing of methods trained on labelled normal + abnormal shots (MVFA, MadCLIP).

    Every shot is trained in each of `views` (fixed augmentations); each item keeps its dataset so
    prompts can carry that dataset's organ word; validation uses the labelled pool as it is.
    `setup` records the training datasets' organ words, whether any has pixel masks, and the
    validation items the score ranges are fixed on. Subclasses give `views(image, mask)` and
    `class_text(class_name) -> (2, D)`.
    """

    normal_only = False

    def __init__(self, backbone: FrozenCLIP, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.register_buffer("seg_task", torch.tensor(True))  # the dataset has pixel masks
        self.train_classes: list[str] = []
        self.validation: list[dict] = []

    def setup(
        self,
        supports: Sequence[SupportSet],
        class_name: str,
        validation: SupportSet | None = None,
        target: SupportSet | None = None,
        seed: int = 0,
    ) -> None:
        super().setup(supports, class_name, validation, target, seed)
        self.train_classes = [s.clsname for s in supports]
        self.seg_task.fill_(any(s.dataset_has_masks for s in supports))
        self.validation = plain_items(validation) if validation is not None else []

    def views(self, image: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The fixed augmented views of one shot (image, mask)."""
        return [(image, mask)]

    def class_text(self, class_name: str) -> Tensor:
        raise NotImplementedError

    def batch_text(self, dataset_ids: Tensor | None, batch: int) -> Tensor:
        """Per-image class features (B, 2, D): each image with its own dataset's organ word."""
        if dataset_ids is None or not self.train_classes:
            return self.class_text(self.class_name).expand(batch, -1, -1)
        table = torch.stack([self.class_text(c) for c in self.train_classes])
        return table[dataset_ids.to(table.device)]

    def train_dataset(self, supports: Sequence[SupportSet], seed: int) -> Dataset:
        return augmented_items(supports, self.views)

    def validation_items(self, support: SupportSet, seed: int) -> list[dict]:
        return plain_items(support)

    def fit_ranges(self, scores: dict[int, Tensor]) -> None:
        """Store (min, max) of each score in row `key` of the `stats` buffer (validation data)."""
        for row, values in scores.items():
            lo, hi = float(values.min()), float(values.max())
            self.stats[row] = torch.tensor([lo, max(hi, lo + 1e-6)])

    def normalized(self, values: Tensor, row: int) -> Tensor:
        """Min-max normalise with the validation range of row `row` (no test statistics)."""
        lo, hi = self.stats[row]
        return (values - lo) / (hi - lo)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        betas = getattr(self.cfg, "betas", (0.9, 0.999))
        return torch.optim.Adam(self.trainable_parameters(), lr=self.cfg.lr, betas=betas)
