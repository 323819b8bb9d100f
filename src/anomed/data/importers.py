"""Arrange the two most common raw layouts of public medical datasets into anomed's folder layout.

- ``class-folders``: one folder per class (``normal/``, ``benign/``, ``malignant/`` ...), images
  either directly inside with masks beside them named ``<stem>_mask.<ext>`` (``_mask_1``, ...;
  the Kaggle BUSI download), or in ``images/`` with masks in ``mask/`` or ``masks/`` matched by
  stem (``<stem>.<ext>`` or ``<stem>_mask[_N].<ext>``).
- ``yes-no``: ``yes/`` (abnormal) and ``no/`` (normal) folders of images without masks (the Kaggle
  brain-tumour MRI download).

Normal classes are split by a seeded draw into the training pool and the test set; every abnormal
image is a test image. Files are copied; the result reads with ``--layout folder``. Every image and
mask is decoded first: a file that is not one (a text file named ``notes.jpg``, a truncated scan)
or has no image name (``notes.txt``) is left out, counted in the summary line and listed with its
reason in ``import_left_out.txt`` in the output.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from anomed.data.io import is_image_file, why_not_an_image
from anomed.errors import AnomedError
from anomed.outputs import check_output_dir, staged_dir, write_text

NORMAL_NAMES = frozenset({"normal", "healthy", "no", "good", "negative", "benign_free"})
LEFT_OUT_FILE = "import_left_out.txt"
_MASK = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<n>\d+))?$", re.IGNORECASE)


@dataclass
class ImportSummary:
    """What an import found and wrote."""

    output: Path
    train_normal: int = 0
    test_normal: int = 0
    test_abnormal: int = 0
    masks_matched: int = 0  # abnormal images with at least one mask
    masks_merged: int = 0  # images with several mask files (merged when read)
    masks_missing: int = 0  # abnormal images without a mask (where the layout has masks)
    classes: dict[str, str] = field(default_factory=dict)  # class folder -> normal/abnormal
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (file, why): not images

    def line(self) -> str:
        masks = (
            f"masks matched for {self.masks_matched} abnormal images "
            f"({self.masks_merged} with several files, {self.masks_missing} without)"
            if self.masks_matched
            else "no masks (image-level labels only)"
        )
        classes = ", ".join(f"{c} -> {kind}" for c, kind in self.classes.items())
        return (
            f"wrote {self.output}: train/normal {self.train_normal}, test/normal "
            f"{self.test_normal}, test/abnormal {self.test_abnormal}; {masks}; classes: {classes}"
            + self._left_out_text()
        )

    def _left_out_text(self, shown: int = 5) -> str:
        if not self.left_out:
            return ""
        listed = "; ".join(f"{name} ({why})" for name, why in self.left_out[:shown])
        more = len(self.left_out) - shown
        rest = f"; {more} more" if more > 0 else ""
        return (
            f"; LEFT OUT {len(self.left_out)} files that are not images: {listed}{rest} "
            f"(all listed in {self.output / LEFT_OUT_FILE})"
        )


@dataclass
class _Item:
    image: Path
    label: int  # 0 normal, 1 abnormal
    masks: list[Path]
    cls: str


def _images(folder: Path, left_out: list[tuple[Path, str]]) -> list[Path]:
    """The files of `folder` that decode as images; the others go to `left_out` with why."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = []
    for path in files:
        why = why_not_an_image(path) if is_image_file(path) else "no image file name"
        if why:
            left_out.append((path, why))
        else:
            images.append(path)
    return images


def _class_items(folder: Path, label: int, left_out: list[tuple[Path, str]]) -> list[_Item]:
    """Images of one class folder with their masks (beside them, or in mask/ or masks/)."""
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    mask_dirs = [d for d in (folder / "mask", folder / "masks") if d.is_dir()]
    masks: dict[str, list[Path]] = {}
    candidates = [p for d in mask_dirs for p in _images(d, left_out)]
    candidates += _images(image_dir, left_out)
    for path in candidates:
        match = _MASK.match(path.stem)
        if match:
            masks.setdefault(match["stem"], []).append(path)
        elif path.parent != image_dir:  # a mask folder file named like its image
            masks.setdefault(path.stem, []).append(path)
    images = [p for p in candidates if p.parent == image_dir and not _MASK.match(p.stem)]
    by_stem = Counter(p.stem for p in images)
    items = []
    for image in images:
        found = sorted(masks.get(image.stem, []), key=lambda p: (len(p.stem), p.stem))
        if found and by_stem[image.stem] > 1:
            twins = sorted(p.name for p in images if p.stem == image.stem)
            raise AnomedError(
                f"{image_dir}: images {', '.join(twins)} share the stem {image.stem!r}, so "
                f"{found[0].name} could belong to either. Fix: rename one image (and its masks)."
            )
        items.append(_Item(image, label, found, folder.name))
    return items


def _read_classes(
    src: Path, kind: str, normal: set[str], left_out: list[tuple[Path, str]]
) -> tuple[list[_Item], dict[str, str]]:
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if kind == "yes-no":
        names = {p.name.lower(): p for p in folders}
        if not {"yes", "no"} <= names.keys():
            raise AnomedError(
                f"{src}: the yes-no layout needs yes/ and no/ folders, found "
                f"{[p.name for p in folders]}. Fix: point --from class-folders at it instead."
            )
        pairs = [(names["no"], 0), (names["yes"], 1)]
    else:
        if len(folders) < 2:
            raise AnomedError(
                f"{src}: the class-folders layout needs one folder per class (e.g. normal/, "
                f"benign/), found {[p.name for p in folders]}."
            )
        pairs = [(p, 0 if p.name.lower() in normal else 1) for p in folders]
        if not any(label == 0 for _, label in pairs):
            raise AnomedError(
                f"{src}: no class folder is named as normal ({sorted(normal)}). Fix: pass "
                "--normal NAME with the folder that holds the normal images."
            )
    items = [item for folder, label in pairs for item in _class_items(folder, label, left_out)]
    if not items:
        first = f" ({len(left_out)} files left out, e.g. {left_out[0][0]}: {left_out[0][1]})"
        raise AnomedError(
            f"{src}: no PNG/JPEG/BMP/TIFF images in its class folders"
            + (first if left_out else "")
            + "."
        )
    return items, {p.name: ("normal" if label == 0 else "abnormal") for p, label in pairs}


def _unique_name(item: _Item, used: set[str]) -> str:
    name = item.image.name
    if name.lower() in used:
        name = f"{item.cls}_{name}"
    n = 1
    while name.lower() in used:
        name, n = f"{item.cls}_{n}_{item.image.name}", n + 1
    used.add(name.lower())
    return name


def import_dataset(
    src: str | Path,
    output: str | Path,
    kind: Literal["class-folders", "yes-no"] = "class-folders",
    train_fraction: float = 0.5,
    seed: int = 0,
    normal: tuple[str, ...] = (),
    overwrite: bool = False,
) -> ImportSummary:
    """Copy a raw class-folder or yes/no dataset into anomed's folder layout at `output`."""
    src = Path(src)
    if not src.is_dir():
        raise AnomedError(f"{src}: no such folder. Fix: pass the dataset's top folder.")
    if not 0.0 < train_fraction < 1.0:
        raise AnomedError(f"--train-fraction {train_fraction}: must lie strictly between 0 and 1")
    out = check_output_dir(output, overwrite, inputs=[src])
    left_out: list[tuple[Path, str]] = []
    normal_names = {n.lower() for n in normal} or set(NORMAL_NAMES)
    items, classes = _read_classes(src, kind, normal_names, left_out)
    normals = [i for i in items if i.label == 0]
    order = np.random.default_rng(seed).permutation(len(normals))
    n_train = max(1, int(round(train_fraction * len(normals))))
    if n_train >= len(normals):
        raise AnomedError(
            f"{src}: {len(normals)} normal images are too few to split into train and test"
        )
    train = {id(normals[i]) for i in order[:n_train]}
    summary = ImportSummary(out, classes=classes)
    summary.left_out = [(p.relative_to(src).as_posix(), why) for p, why in left_out]
    with staged_dir(out) as stage:
        used: set[str] = set()
        for item in items:
            _copy(item, stage, id(item) in train, _unique_name(item, used), summary)
        if summary.left_out:
            lines = [f"{name}\t{why}" for name, why in summary.left_out]
            write_text(
                stage / LEFT_OUT_FILE, "file\twhy it was left out\n" + "\n".join(lines) + "\n"
            )
    return summary


def _copy(item: _Item, stage: Path, train: bool, name: str, summary: ImportSummary) -> None:
    if item.label == 0:
        folder = stage / ("train" if train else "test") / "normal"
        summary.train_normal += train
        summary.test_normal += not train
    else:
        folder = stage / "test" / "abnormal"
        summary.test_abnormal += 1
        if item.masks:
            summary.masks_matched += 1
            summary.masks_merged += len(item.masks) > 1
        else:
            summary.masks_missing += 1
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(item.image, folder / name)
    if item.label == 1 and item.masks:
        masks = stage / "test" / "masks"
        masks.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        for n, mask in enumerate(item.masks):
            suffix = "" if n == 0 else f"_{n}"
            shutil.copy2(mask, masks / f"{stem}_mask{suffix}{mask.suffix}")
