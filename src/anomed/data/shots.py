"""k-shot support sets: draw them reproducibly from a training pool and save them to a file.

The shots and a small validation split both come from the training pool, never from the test
set. A shot list (YAML) records k, the seed and every file, so a run can be repeated exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from anomed.config import safe_yaml
from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError

_HEADER = (
    "# anomed shot list: the k-shot support set and validation split of one run.\n"
    "# Paths are relative to the dataset root. Re-use it with the same dataset to repeat the run.\n"
)


@dataclass
class ShotSplit:
    """The support images of a run and the validation images held out beside them."""

    shots: list[Sample]  # k normals, then any labelled abnormal shots
    val: list[Sample]  # up to n_val normals (+ up to n_val abnormals) left over in the pool
    seed: int
    k: int  # number of normal shots


def sample_shots(
    pool: list[Sample], k: int, seed: int, n_val: int = 8, k_abnormal: int = 0
) -> ShotSplit:
    """Draw k normal shots (and `k_abnormal` abnormal ones) without replacement from `pool`.

    The validation split takes up to `n_val` normals (and up to `n_val` abnormals) from what is
    left. The pool is sorted by path first, so the result depends only on its contents and
    `seed`; with one seed the k=4 shots are the first four of the k=8 shots.
    """
    if k < 0 or k_abnormal < 0 or n_val < 0:
        raise AnomedError(f"k={k}, k_abnormal={k_abnormal} and n_val={n_val} must not be negative.")
    unique = sorted({s.image: s for s in pool}.values(), key=lambda s: str(s.image))
    normals = [s for s in unique if s.label == NORMAL]
    abnormals = [s for s in unique if s.label == ABNORMAL]
    _check_enough(len(normals), k, "normal", "k")
    _check_enough(len(abnormals), k_abnormal, "abnormal", "k_abnormal")
    rng = np.random.default_rng(seed)
    normal_order = rng.permutation(len(normals))
    abnormal_order = rng.permutation(len(abnormals))
    shots = [normals[i] for i in normal_order[:k]]
    shots += [abnormals[i] for i in abnormal_order[:k_abnormal]]
    val = [normals[i] for i in normal_order[k : k + n_val]]
    val += [abnormals[i] for i in abnormal_order[k_abnormal : k_abnormal + n_val]]
    return ShotSplit(shots=shots, val=val, seed=seed, k=k)


def _check_enough(available: int, wanted: int, kind: str, arg: str) -> None:
    if available < wanted:
        raise AnomedError(
            f"the training pool has {available} {kind} images but {arg}={wanted} asks for "
            f"{wanted}. Fix: use {arg} <= {available}, or add {kind} training images."
        )


def write_shot_list(path: str | Path, split: ShotSplit, root: str | Path) -> Path:
    """Write `split` as YAML with file paths relative to the dataset `root`; returns the path."""
    path, root = Path(path), Path(root)
    doc = {
        "k": int(split.k),
        "seed": int(split.seed),
        "shots": [_sample_to_dict(s, root) for s in split.shots],
        "val": [_sample_to_dict(s, root) for s in split.val],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, allow_unicode=True)
    path.write_text(_HEADER + text, encoding="utf-8")
    return path


def read_shot_list(path: str | Path, root: str | Path) -> ShotSplit:
    """Read a shot list written by `write_shot_list`; paths are joined to the dataset `root`."""
    path, root = Path(path), Path(os.path.abspath(root))
    if not path.is_file():
        raise AnomedError(f"{path}: no such shot list. Fix: check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnomedError(
            f"{path}: not a valid YAML shot list ({type(exc).__name__}: {exc}). "
            "Fix: re-create the shot list."
        ) from None
    doc = safe_yaml(text, str(path))
    if not isinstance(doc, dict) or not {"k", "seed", "shots", "val"} <= doc.keys():
        raise AnomedError(
            f"{path}: a shot list needs the keys k, seed, shots and val. "
            "Fix: re-create it with `write_shot_list`."
        )
    try:
        shots = [_sample_from_dict(d, root, path) for d in doc["shots"] or []]
        val = [_sample_from_dict(d, root, path) for d in doc["val"] or []]
        return ShotSplit(shots=shots, val=val, seed=int(doc["seed"]), k=int(doc["k"]))
    except (TypeError, KeyError, ValueError) as exc:
        raise AnomedError(
            f"{path}: malformed shot list ({type(exc).__name__}: {exc}). Fix: re-create it."
        ) from None


def _relative(file: Path, root: Path) -> str:
    """`file` relative to `root` in POSIX form; absolute when it lies outside `root`."""
    for f, r in ((file, root), (Path(os.path.abspath(file)), Path(os.path.abspath(root)))):
        try:
            return f.relative_to(r).as_posix()
        except ValueError:
            continue
    return Path(os.path.abspath(file)).as_posix()


def _sample_to_dict(sample: Sample, root: Path) -> dict:
    out: dict = {"image": _relative(sample.image, root), "label": int(sample.label)}
    if sample.masks:
        out["masks"] = [_relative(m, root) for m in sample.masks]
    out["clsname"] = sample.clsname
    return out


def _sample_from_dict(entry: dict, root: Path, source: Path) -> Sample:
    image = _resolve(entry["image"], root, source)
    masks = tuple(_resolve(m, root, source) for m in entry.get("masks") or [])
    return Sample(image, int(entry.get("label", NORMAL)), masks, str(entry.get("clsname", "")))


def _resolve(name: str, root: Path, source: Path) -> Path:
    file = root / name  # an absolute `name` stays absolute
    if not file.is_file():
        raise AnomedError(
            f"{source}: lists {name}, not found under {root}. "
            "Fix: pass the dataset root the shot list was written for."
        )
    return file


def carve_abnormals(splits: DatasetSplits, n: int, seed: int) -> DatasetSplits:
    """Move `n` seeded abnormal test images into the training pool (they leave the test set).

    For supervised methods on datasets whose training pool is normal-only (the MediCLIP split):
    labelled abnormal shots and validation abnormals must come from somewhere, and every image
    moved is removed from the test set, so nothing is both trained on and tested on.
    """
    abnormals = sorted((s for s in splits.test if s.label == ABNORMAL), key=lambda s: str(s.image))
    _check_enough(len(abnormals), n, "abnormal test", "k_abnormal + n_val")
    order = np.random.default_rng([seed, 1]).permutation(len(abnormals))
    moved = {abnormals[i].image for i in order[:n]}
    return DatasetSplits(
        name=splits.name,
        root=splits.root,
        train=[*splits.train, *(s for s in splits.test if s.image in moved)],
        test=[s for s in splits.test if s.image not in moved],
    )
