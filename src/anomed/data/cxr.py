"""The chest X-ray `data.json` layout of PPAD (and of DDAD / MedIAnomaly before it).

    <root>/data.json     {"train": {"0": [names]}, "test": {"0": [names], "1": [names]}}
    <root>/images/...    the listed files; names are relative to this folder
    <root>/masks/...     optional, an anomed extension: the mask of abnormal image `name` is
                         masks/<name>, or masks/<name stem>.png

"0" lists normal images and "1" abnormal ones. The training pool is train/"0" plus train/"1"
when present (labelled abnormal shots); train/"unlabeled" (DDAD's unlabelled pool) is not used.
Where there is no `images/` folder, names are looked up next to data.json, then in the one
sub-folder that holds the first listed file (DDAD's `train_png_512/`, for instance).
Files are not opened here (reading is lazy); only their existence is checked.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from anomed.data.io import IMAGE_EXTENSIONS
from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError

DATA_JSON = "data.json"
CLSNAME = "chest"
_LABELS = {"0": NORMAL, "1": ABNORMAL}
_IGNORED = frozenset({"unlabeled"})
_EXAMPLE = '{"train": {"0": ["a.png"]}, "test": {"0": ["b.png"], "1": ["c.png"]}}'


def is_cxr_json(root: str | Path) -> bool:
    """True when `root` holds a data.json (the marker of this layout)."""
    return (Path(root) / DATA_JSON).is_file()


def read_cxr_json(root: str | Path) -> DatasetSplits:
    """Read `<root>/data.json` into a `DatasetSplits` (clsname "chest")."""
    root = Path(root)
    path = root / DATA_JSON
    spec = _load(path)
    lists = {split: _split_lists(spec, split, path) for split in ("train", "test")}
    first = next((n for split in lists.values() for names in split.values() for n in names), None)
    if first is None:
        raise AnomedError(f"{path}: lists no images. Fix: fill it in, e.g. {_EXAMPLE}.")
    image_dir = _image_dir(root, first, path)
    mask_dir = root / "masks"
    splits = {
        split: [
            _sample(image_dir, mask_dir, name, _LABELS[key], f'{path}: "{split}"/"{key}"')
            for key, names in by_label.items()
            for name in names
        ]
        for split, by_label in lists.items()
    }
    if not any(s.label == NORMAL for s in splits["train"]):
        raise AnomedError(f'{path}: "train"/"0" is empty. Fix: list the normal training images.')
    if not splits["test"]:
        raise AnomedError(f'{path}: "test" lists no images. Fix: list them under "0" and "1".')
    _warn_overlap(splits, path)
    return DatasetSplits(root.name, root, train=splits["train"], test=splits["test"])


def _load(path: Path) -> dict:
    if not path.is_file():
        raise AnomedError(f"{path}: no such file. Fix: the data.json layout needs it: {_EXAMPLE}.")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnomedError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}). "
            "Fix: correct the file there."
        ) from None
    except UnicodeDecodeError:
        raise AnomedError(f"{path}: not a UTF-8 text file. Fix: save it as UTF-8 JSON.") from None
    except RecursionError:
        raise AnomedError(f"{path}: JSON nested too deeply. Fix: correct the file.") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("test"), dict):
        raise AnomedError(f'{path}: expected an object with "train" and "test"; e.g. {_EXAMPLE}.')
    return spec


def _split_lists(spec: dict, split: str, path: Path) -> dict[str, list[str]]:
    """{"0": names, "1": names} of one split, checked; unknown keys warned about."""
    by_label = spec.get(split, {})
    if not isinstance(by_label, dict):
        raise AnomedError(f'{path}: "{split}" must be an object like {{"0": [...], "1": [...]}}.')
    unknown = sorted(set(by_label) - set(_LABELS) - _IGNORED)
    if unknown:
        warnings.warn(
            f'{path}: "{split}" has keys {unknown} besides "0" and "1"; they are ignored.',
            stacklevel=3,
        )
    out = {}
    for key in _LABELS:
        names = by_label.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise AnomedError(
                f'{path}: "{split}"/"{key}" must be a list of file names. Fix: e.g. ["x.png"].'
            )
        out[key] = names
    return out


def _image_dir(root: Path, first: str, path: Path) -> Path:
    """images/ if it exists, else root, else the one sub-folder holding the first listed file."""
    if (root / "images").is_dir():
        return root / "images"
    if (root / first).is_file():
        return root
    holders = sorted(p for p in root.iterdir() if p.is_dir() and (p / first).is_file())
    if len(holders) == 1:
        return holders[0]
    raise AnomedError(
        f"{path}: lists {first}, which is neither in {root / 'images'} nor in {root} "
        f"({len(holders)} sub-folders hold it). Fix: put the images in {root / 'images'}."
    )


def _sample(image_dir: Path, mask_dir: Path, name: str, label: int, where: str) -> Sample:
    image = image_dir / name
    if not image.is_file():
        raise AnomedError(
            f"{where} lists {name}, but {image} does not exist. "
            "Fix: restore the file or remove the name from data.json."
        )
    masks: tuple[Path, ...] = ()
    if label == ABNORMAL:
        candidates = (mask_dir / name, (mask_dir / name).with_suffix(".png"))
        found = [p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        masks = tuple(found[:1])
    return Sample(image, label, masks, CLSNAME)


def _warn_overlap(splits: dict[str, list[Sample]], path: Path) -> None:
    """A file both in the training pool and in the test set leaks test images into training."""
    both = {s.image for s in splits["train"]} & {s.image for s in splits["test"]}
    if both:
        example = sorted(both)[0].name
        warnings.warn(
            f'{path}: {len(both)} images are listed both in "train" and "test" (e.g. {example}); '
            "results on them are not held-out results.",
            stacklevel=3,
        )
