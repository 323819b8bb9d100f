"""Compose synthesis tasks: 1-2 anomalies per normal image, kept inside the body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from anomed.errors import AnomedError
from anomed.registry import Registry
from anomed.synthesis.cutpaste import CutPaste
from anomed.synthesis.intensity import GaussIntensityChange
from anomed.synthesis.perlin import foreground_mask
from anomed.synthesis.source import Source


class SynthesisTask(Protocol):
    """An anomaly synthesis task: normal image in, (anomalous image, bool mask) out."""

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        donors: Sequence[np.ndarray] = (),
        foreground: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


SYNTHESIS: Registry[type] = Registry("synthesis task")
SYNTHESIS.register("cutpaste")(CutPaste)
SYNTHESIS.register("gauss_intensity")(GaussIntensityChange)
SYNTHESIS.register("source")(Source)


@dataclass
class AnomalySynthesizer:
    """Turn a normal image into (anomalous image, mask) for training on normal images only.

    Each call applies 1-2 tasks in sequence (picked with equal probability) and returns the union
    of their masks; with probability `identity_prob` it returns the image unchanged and an empty
    mask. Anomalies stay inside the body (see `foreground_mask`), so none lands in the black
    background of a brain slice.
    """

    tasks: Sequence[str | SynthesisTask] = (
        "cutpaste",
        "gauss_intensity",
        "source",
    )  # names or tasks
    n_anomalies: tuple[int, int] = (1, 2)  # anomalies per image, both ends included
    identity_prob: float = 0.0  # chance of returning the image unchanged with an empty mask
    foreground_threshold: float = 0.05  # grayscale above this is body (before hole filling)

    def __post_init__(self) -> None:
        low, high = self.n_anomalies
        if not self.tasks:
            raise AnomedError("synthesis: no tasks. Fix: name at least one of " + _known())
        if not 1 <= low <= high:
            raise AnomedError(
                f"synthesis: n_anomalies={tuple(self.n_anomalies)} is not a range (min, max) with "
                "1 <= min <= max. Fix: use e.g. (1, 2)."
            )
        if not 0.0 <= self.identity_prob <= 1.0:
            raise AnomedError(
                f"synthesis: identity_prob={self.identity_prob} is not a probability. "
                "Fix: use a value in [0, 1]."
            )
        # Built here, not a field: asdict() of the config stays plain names and numbers.
        self._tasks: tuple[SynthesisTask, ...] = tuple(
            SYNTHESIS.get(t)() if isinstance(t, str) else t for t in self.tasks
        )

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        donors: Sequence[np.ndarray] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (image float32 (H, W, 3) in [0, 1], mask bool (H, W)).

        `donors` are other normal images of the support set, used by CutPaste.
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        mask = np.zeros(image.shape[:2], dtype=bool)
        if rng.random() < self.identity_prob:
            return image.copy(), mask
        foreground = foreground_mask(image, self.foreground_threshold)
        low, high = self.n_anomalies
        for _ in range(int(rng.integers(low, high + 1))):
            task = self._tasks[rng.integers(len(self._tasks))]
            image, task_mask = task(image, rng, donors, foreground=foreground)
            mask |= task_mask
        return image, mask


def _known() -> str:
    return ", ".join(SYNTHESIS.names())
