"""Torch datasets over samples: plain images for evaluation, synthesized anomalies for training.

Every item is a dict: image (3, S, S) float in [0, 1] (the backbone normalises), mask (S, S)
float in {0, 1}, label (int), index (int). Images are resized to the model's input size once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from anomed.data.io import read_image, read_mask
from anomed.data.sample import Sample

Synthesizer = Callable[..., tuple[np.ndarray, np.ndarray]]  # (image, rng, donors=) -> (image, mask)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float -> (size, size, 3), area filter when shrinking, cubic when enlarging."""
    if image.shape[:2] == (size, size):
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (size, size), interpolation=interp), 0.0, 1.0)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool with nearest neighbour (labels must not blur)."""
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def load_sample(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample's image and merged mask at the model size: (S, S, 3) float, (S, S) bool."""
    image = read_image(sample.image)
    if sample.masks:
        mask = read_mask(sample.masks, size=image.shape[:2])
    else:
        mask = np.zeros(image.shape[:2], dtype=bool)
    return resize_image(image, size), resize_mask(mask, size)


def to_item(
    image: np.ndarray, mask: np.ndarray, label: int, index: int, has_mask: bool = True
) -> dict:
    """One dataset item; `has_mask` says whether `mask` is real pixel ground truth."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
        "mask": torch.from_numpy(mask.astype(np.float32)),
        "label": int(label),
        "index": index,
        "has_mask": bool(has_mask),
    }


class SampleDataset(Dataset):
    """The images of a list of samples (test sets, validation sets, support sets)."""

    def __init__(self, samples: Sequence[Sample], size: int) -> None:
        self.samples = list(samples)
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image, mask = load_sample(sample, self.size)
        has_mask = sample.has_mask or sample.label == 0
        return to_item(image, mask, sample.label, index, has_mask)


class SynthesisDataset(Dataset):
    """Normal support images with freshly synthesized anomalies: one pass = `length` items.

    Randomness is keyed on (seed, epoch, index), so a run is repeatable whatever the loader's
    worker count; call `set_epoch` each epoch for new anomalies.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        synthesizer: Synthesizer,
        length: int | None = None,
        seed: int = 0,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ) -> None:
        if not images:
            raise ValueError("SynthesisDataset needs at least one support image")
        self.images = list(images)
        self.synthesizer = synthesizer
        self.length = length or len(self.images)
        self.seed = seed
        self.epoch = 0
        self.augment = augment

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        base_index = index % len(self.images)
        image = self.images[base_index]
        if self.augment is not None:
            image = self.augment(image, rng)
        donors = [im for i, im in enumerate(self.images) if i != base_index]
        out, mask = self.synthesizer(image, rng, donors=donors)
        return to_item(out, mask, int(mask.any()), index)


def synthetic_validation_set(
    images: Sequence[np.ndarray], synthesizer: Synthesizer, seed: int
) -> list[dict]:
    """Each validation normal twice: as it is (label 0) and with a synthesized anomaly (label 1).

    Normal-only training pools hold no real anomalies; these fixed synthetic ones let a run
    select its epoch and calibrate without ever touching the test set.
    """
    items = []
    for i, image in enumerate(images):
        rng = np.random.default_rng([seed, 10_000 + i])
        donors = [im for j, im in enumerate(images) if j != i] or [image]
        anomalous, mask = synthesizer(image, rng, donors=donors)
        items.append(to_item(image, np.zeros(image.shape[:2], dtype=bool), 0, 2 * i))
        items.append(to_item(anomalous, mask, int(mask.any()), 2 * i + 1))
    return items


def collate(items: Sequence[dict]) -> dict:
    """Stack a list of items into a batch dict: tensors stacked, numbers/bools as tensors."""
    batch = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if torch.is_tensor(values[0]):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, float)):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


class ItemsDataset(Dataset):
    """A fixed list of items (augmented support views, validation sets) as a Dataset."""

    def __init__(self, items: Sequence[dict]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


@dataclass
class SupportSet:
    """The k-shot images of one dataset at the model's input size, with labels and masks."""

    images: list[np.ndarray]  # (S, S, 3) float32 in [0, 1]
    labels: list[int]
    masks: list[np.ndarray]  # (S, S) bool; all-zero where there is no mask
    has_mask: list[bool]  # whether the mask is real ground truth (normals: always)
    clsname: str = ""  # the dataset's class/organ name, e.g. "brain"

    def __len__(self) -> int:
        return len(self.images)

    @property
    def normals(self) -> list[np.ndarray]:
        return [im for im, y in zip(self.images, self.labels, strict=True) if y == 0]

    @property
    def dataset_has_masks(self) -> bool:
        """True when the abnormal images carry pixel masks (segmentation losses apply)."""
        return any(h for h, y in zip(self.has_mask, self.labels, strict=True) if y == 1)


def load_support(samples: Sequence[Sample], size: int, clsname: str = "") -> SupportSet:
    """Read and resize support samples once."""
    pairs = [load_sample(s, size) for s in samples]
    return SupportSet(
        images=[p[0] for p in pairs],
        labels=[s.label for s in samples],
        masks=[p[1] for p in pairs],
        has_mask=[s.has_mask or s.label == 0 for s in samples],
        clsname=clsname or (samples[0].clsname if samples else ""),
    )


def augmented_items(
    supports: Sequence[SupportSet],
    views: Callable[[np.ndarray, np.ndarray], list[tuple[np.ndarray, np.ndarray]]],
) -> ItemsDataset:
    """Every shot of every support set in all its `views`; items remember their dataset index.

    A view's mask counts as ground truth only where its dataset has pixel masks at all, so
    image-level datasets train with classification losses alone.
    """
    items = []
    for d, support in enumerate(supports):
        seg = support.dataset_has_masks
        rows = zip(support.images, support.labels, support.masks, support.has_mask, strict=True)
        for image, label, mask, has in rows:
            for view, view_mask in views(image, mask):
                item = to_item(view, view_mask, label, len(items), has and seg)
                items.append({**item, "dataset": d})
    return ItemsDataset(items)


def plain_items(support: SupportSet) -> list[dict]:
    """The support images as they are (validation sets of labelled pools)."""
    rows = zip(support.images, support.masks, support.labels, support.has_mask, strict=True)
    return [to_item(im, m, y, i, h) for i, (im, m, y, h) in enumerate(rows)]
