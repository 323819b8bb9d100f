"""The record every dataset layout produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMAL, ABNORMAL = 0, 1


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: where it is, its label and its pixel masks (if any)."""

    image: Path
    label: int = NORMAL  # 0 normal, 1 abnormal
    masks: tuple[Path, ...] = ()  # several files are merged (BUSI has `_mask_1` extras)
    clsname: str = ""  # the dataset / organ class name, e.g. "brain"

    @property
    def has_mask(self) -> bool:
        return bool(self.masks)


@dataclass
class DatasetSplits:
    """A dataset as a layout reads it: the training pool and the test set."""

    name: str
    root: Path
    train: list[Sample] = field(default_factory=list)  # the k-shot pool
    test: list[Sample] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        return any(s.has_mask for s in self.test)
