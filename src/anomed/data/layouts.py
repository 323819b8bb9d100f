"""Dataset layouts: turn a folder on disk into a `DatasetSplits` (training pool + test set).

Layouts are registered by name (`LAYOUTS`): samples-json, folder, bmad (data.bmad) and data-json
(PPAD's chest X-ray data.json, data.cxr). The two described here:

- ``samples-json`` (the MediCLIP benchmark split in ``../shared/data/mediclip/``)::

      <root>/images/...                      image and mask files
      <root>/samples/train.json, test.json   one JSON object per line:
          {"filename": "test/abnormal/x.jpg", "label": 1, "clsname": ..., "mask": "..."}

- ``folder`` (what a user makes by hand)::

      <root>/train/normal/*     training pool (required)
      <root>/train/abnormal/*   optional labelled abnormal training images (+ train/masks/)
      <root>/test/normal/*      test images
      <root>/test/abnormal/*
      <root>/test/masks/*       optional; image x.png matches x_mask.<ext> (+ x_mask_1.<ext>, ...)
                                or x.<ext>

Files are not opened here (reading is lazy); only their existence is checked.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from anomed.data.bmad import is_bmad_dataset, read_bmad
from anomed.data.cxr import is_cxr_json, read_cxr_json
from anomed.data.io import is_image_file
from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError
from anomed.registry import Registry

LayoutReader = Callable[[Path], DatasetSplits]
LAYOUTS: Registry[LayoutReader] = Registry("dataset layout")
LAYOUTS.register("bmad")(read_bmad)
LAYOUTS.register("data-json")(read_cxr_json)

_SPLITS = ("train", "test")
_LABEL_WORDS = frozenset({"normal", "good", "healthy", "abnormal", "anomaly", "anomalous"})


def load_dataset(root: str | Path, layout: str = "auto") -> DatasetSplits:
    """Read the dataset at `root` with the named layout ("auto" picks it from the files)."""
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.is_dir():
        raise AnomedError(f"{root}: dataset folder not found. Fix: check the --data path.")
    if layout == "auto":
        return LAYOUTS.get(detect_layout(root))(root)
    reader = LAYOUTS.get(layout)
    try:
        return reader(root)
    except AnomedError as exc:
        try:
            found = detect_layout(root)
        except AnomedError:
            raise exc from None
        if found == layout:
            raise
        raise AnomedError(
            f"{root}: does not read as the {layout!r} layout ({exc}); it looks like the "
            f"{found!r} layout. Fix: pass --layout {found} (or --layout auto)."
        ) from None


def detect_layout(root: Path) -> str:
    """samples-json if `<root>/samples/test.json` exists, bmad if valid/good and test/good exist,
    else folder if `<root>/test` exists."""
    json_marker, folder_marker = root / "samples" / "test.json", root / "test"
    if json_marker.is_file():
        return "samples-json"
    if is_bmad_dataset(root):
        return "bmad"
    if is_cxr_json(root):
        return "data-json"
    if folder_marker.is_dir():
        return "folder"
    raise AnomedError(
        f"{root}: unknown dataset layout; looked for {json_marker} (samples-json layout) and "
        f"{folder_marker}/ (folder layout). Fix: arrange the data as train/normal/, "
        "test/normal/, test/abnormal/ (see `anomed.data.layouts`), or pass the right root."
    )


# ---------------------------------------------------------------- samples-json


@LAYOUTS.register("samples-json")
def read_samples_json(root: Path) -> DatasetSplits:
    """Read `<root>/samples/{train,test}.json` (JSON lines; paths relative to `<root>/images`).

    `clsname` comes from the JSON, unless it only repeats the label (the MediCLIP files use
    "normal" / "abnormal" / "benign"): a name that differs between normal and abnormal samples
    would hand the label to any method that puts `clsname` in a prompt, so the dataset name
    (the root folder name) is used instead.
    """
    records = {split: _read_json_lines(root / "samples" / f"{split}.json") for split in _SPLITS}
    every = [rec for recs in records.values() for _, rec in recs]
    listed_masks = {root / "images" / rec["mask"] for rec in every if rec.get("mask")}
    use_json_names = not _clsname_tracks_label(every)
    splits: dict[str, list[Sample]] = {}
    for split, recs in records.items():
        source = root / "samples" / f"{split}.json"
        splits[split] = [
            _json_sample(root, rec, f"{source}:{line}", listed_masks, use_json_names)
            for line, rec in recs
        ]
    _require(splits["train"], root / "samples" / "train.json", "training pool")
    _require(splits["test"], root / "samples" / "test.json", "test set")
    return DatasetSplits(root.name, root, train=splits["train"], test=splits["test"])


def _read_json_lines(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; errors name the file and line."""
    if not path.is_file():
        raise AnomedError(f"{path}: no such file. Fix: the samples-json layout needs it.")
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AnomedError(f"{path}: not a UTF-8 text file. Fix: save it as UTF-8 JSON.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise AnomedError(
                f"{path}:{number}: not valid JSON ({why}). Fix: one JSON object per line."
            ) from None
        if not isinstance(rec, dict) or "filename" not in rec or "label" not in rec:
            raise AnomedError(
                f"{path}:{number}: expected an object with 'filename' and 'label'. "
                'Fix: write e.g. {"filename": "test/abnormal/x.png", "label": 1}.'
            )
        if rec["label"] not in (NORMAL, ABNORMAL):
            raise AnomedError(f"{path}:{number}: label must be 0 or 1, got {rec['label']!r}.")
        out.append((number, rec))
    return out


def _clsname_tracks_label(recs: list[dict]) -> bool:
    """True when normal and abnormal samples never share a clsname (it encodes the label)."""
    names = {label: {r.get("clsname", "") for r in recs if r["label"] == label} for label in (0, 1)}
    if not names[0] or not names[1]:
        return bool((names[0] | names[1]) & _LABEL_WORDS)
    return not (names[0] & names[1])


def _json_sample(
    root: Path, rec: dict, where: str, listed_masks: set[Path], use_json_names: bool
) -> Sample:
    image = _existing(root / "images" / rec["filename"], where)
    masks: tuple[Path, ...] = ()
    if rec.get("mask"):
        first = _existing(root / "images" / rec["mask"], where)
        extras = [p for p in _numbered_siblings(first) if p not in listed_masks]
        masks = (first, *extras)
    clsname = str(rec.get("clsname", "")) if use_json_names else ""
    return Sample(image, int(rec["label"]), masks, clsname or root.name)


def _existing(path: Path, where: str) -> Path:
    if not path.is_file():
        raise AnomedError(
            f"{where}: lists {path}, which does not exist. Fix: restore the file or drop the line."
        )
    return path


def _numbered_siblings(mask: Path) -> list[Path]:
    """BUSI-style extra masks next to `x_mask.jpg`: `x_mask_1.jpg`, `x_mask_2.jpg`, ..."""
    out = []
    while (extra := mask.with_name(f"{mask.stem}_{len(out) + 1}{mask.suffix}")).is_file():
        out.append(extra)
    return out


# ---------------------------------------------------------------------- folder


@LAYOUTS.register("folder")
def read_folder(root: Path) -> DatasetSplits:
    """Read `train/normal`, optional `train/abnormal`, and `test/{normal,abnormal}` folders."""
    train = _folder_split(root / "train", root.name)
    test = _folder_split(root / "test", root.name)
    _require([s for s in train if s.label == NORMAL], root / "train" / "normal", "training pool")
    if not test:
        test_dir = root / "test"
        found = [p.name + "/" for p in sorted(test_dir.glob("*")) if p.is_dir()]  # [] if absent
        raise AnomedError(
            f"{test_dir}: no test images in normal/ or abnormal/ (found folders: "
            f"{', '.join(found) or 'none'}). Fix: put test images in test/normal/ and "
            "test/abnormal/."
        )
    return DatasetSplits(root.name, root, train=train, test=test)


def _folder_split(split_dir: Path, clsname: str) -> list[Sample]:
    normals = [Sample(p, NORMAL, (), clsname) for p in _images_in(split_dir / "normal")]
    abnormal_images = _images_in(split_dir / "abnormal")
    mask_dir = split_dir / "masks"
    index = _mask_index(mask_dir)
    abnormals, unmatched = [], []
    for image in abnormal_images:
        masks = _folder_masks(image.stem, index, mask_dir)
        if index and not masks:
            unmatched.append(image.name)
        abnormals.append(Sample(image, ABNORMAL, masks, clsname))
    if unmatched:
        warnings.warn(
            f"{mask_dir}: no mask for {len(unmatched)} of {len(abnormal_images)} abnormal images "
            f"(e.g. {unmatched[0]}); expected <stem>_mask.<ext> or <stem>.<ext>. "
            "They are kept without a mask.",
            stacklevel=4,
        )
    return normals + abnormals


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name; hidden and non-image files skipped."""
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    broken = sorted(p.name for p in entries if p.is_symlink() and not p.exists())
    if broken:
        warnings.warn(
            f"{folder}: skipped {len(broken)} broken symbolic links (e.g. {broken[0]}); their "
            "images are not in the dataset. Fix: restore the targets or remove the links.",
            stacklevel=4,
        )
    files = (p for p in entries if p.is_file())
    return sorted((p for p in files if is_image_file(p)), key=lambda p: p.name)


def _mask_index(mask_dir: Path) -> dict[str, list[Path]]:
    """Mask files of `mask_dir` grouped by stem (one folder listing, not one per image)."""
    index: dict[str, list[Path]] = {}
    for path in _images_in(mask_dir):
        index.setdefault(path.stem, []).append(path)
    return index


def _folder_masks(stem: str, index: dict[str, list[Path]], mask_dir: Path) -> tuple[Path, ...]:
    """`<stem>_mask.<ext>` plus `<stem>_mask_1.<ext>`, ... if present, else `<stem>.<ext>`."""
    first = _one_mask(index, f"{stem}_mask", mask_dir) or _one_mask(index, stem, mask_dir)
    if first is None:
        return ()
    extras: list[Path] = []
    if first.stem == f"{stem}_mask":
        while (extra := _one_mask(index, f"{stem}_mask_{len(extras) + 1}", mask_dir)) is not None:
            extras.append(extra)
    return (first, *extras)


def _one_mask(index: dict[str, list[Path]], stem: str, mask_dir: Path) -> Path | None:
    hits = index.get(stem, [])
    if len(hits) > 1:
        names = ", ".join(p.name for p in hits)
        raise AnomedError(f"{mask_dir}: several masks for {stem!r} ({names}). Fix: keep one.")
    return hits[0] if hits else None


def _require(samples: list[Sample], where: Path, what: str) -> None:
    if not samples:
        raise AnomedError(
            f"{where}: the {what} is empty. Fix: add images (PNG, JPEG, BMP or TIFF) there."
        )
