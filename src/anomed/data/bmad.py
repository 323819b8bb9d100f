"""The BMAD / MVFA benchmark layout and MVFA's few-shot support files.

    <root>/<Name>_AD/{valid,test}/{good,Ungood}/img/*
    <root>/<Name>_AD/{valid,test}/Ungood/anomaly_mask/<same file name>   (Brain, Liver, Retina_RESC)

The `valid` split is the labelled pool the k normal + k abnormal shots are drawn from; `test` is
the test set. Retina_OCT2017, Chest and Histopathology have no masks (image-level only).
"""

from __future__ import annotations

from pathlib import Path

from anomed.data.io import is_image_file
from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError

SPLITS = ("valid", "test")


def is_bmad_dataset(root: Path) -> bool:
    """A folder with valid/ and test/, each holding good/ (and usually Ungood/)."""
    return all((root / split / "good").is_dir() for split in SPLITS)


def bmad_class_name(root: Path) -> str:
    """Brain_AD -> "brain", Retina_RESC_AD -> "retina_resc"."""
    name = root.name
    return (name[:-3] if name.endswith("_AD") else name).lower()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _read_split(root: Path, split: str, clsname: str) -> list[Sample]:
    samples = []
    for label, sub in ((NORMAL, "good"), (ABNORMAL, "Ungood")):
        folder = root / split / sub / "img"
        if not folder.is_dir():
            if label == NORMAL:
                raise AnomedError(
                    f"{folder}: missing. Fix: BMAD datasets hold "
                    f"{split}/good/img/ and {split}/Ungood/img/."
                )
            continue
        mask_dir = root / split / sub / "anomaly_mask"
        for image in _images(folder):
            masks: tuple[Path, ...] = ()
            if label == ABNORMAL and mask_dir.is_dir():
                mask = mask_dir / image.name
                if not mask.is_file():
                    raise AnomedError(
                        f"{image}: no mask {mask} although the dataset has "
                        "anomaly_mask/. Fix: add the mask or remove the image."
                    )
                masks = (mask,)
            samples.append(Sample(image, label, masks, clsname))
    if not samples:
        raise AnomedError(f"{root / split}: no images in good/img or Ungood/img")
    return samples


def read_bmad(root: str | Path) -> DatasetSplits:
    """One BMAD dataset folder (e.g. `Brain_AD`): pool = valid (labelled), test = test."""
    root = Path(root)
    for split in SPLITS:
        if not (root / split).is_dir():
            raise AnomedError(
                f"{root}: no {split}/ folder. Fix: pass one <Name>_AD dataset "
                "folder of the BMAD layout (valid/ and test/ inside)."
            )
    clsname = bmad_class_name(root)
    return DatasetSplits(
        root.name, root, _read_split(root, "valid", clsname), _read_split(root, "test", clsname)
    )


def list_bmad_datasets(parent: str | Path) -> list[Path]:
    """The BMAD dataset folders directly under `parent`, sorted."""
    parent = Path(parent)
    return sorted(p for p in parent.iterdir() if p.is_dir() and is_bmad_dataset(p))


def write_mvfa_shot_file(
    path: str | Path,
    normal: list[Path],
    abnormal: list[Path],
    root: str | Path,
    repetition: int = 0,
) -> Path:
    """MVFA's support file: lines `a-<rep>: f1 f2 ...` and `n-<rep>: ...`, relative to root."""
    root, path = Path(root), Path(path)
    rel = lambda files: " ".join(str(Path(f).relative_to(root)) for f in files)  # noqa: E731
    path.write_text(f"a-{repetition}: {rel(abnormal)}\nn-{repetition}: {rel(normal)}\n")
    return path


def read_mvfa_shot_file(
    path: str | Path, root: str | Path, repetition: int = 0
) -> tuple[list[Path], list[Path]]:
    """(normal, abnormal) files of one repetition of an MVFA support file."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise AnomedError(f"{path}: no such shot file")
    found: dict[str, list[Path]] = {}
    for line in path.read_text().splitlines():
        key, sep, files = line.partition(":")
        if sep and key.strip() in (f"a-{repetition}", f"n-{repetition}"):
            found[key.strip()[0]] = [root / f for f in files.split()]
    for files in found.values():
        for f in files:
            if not f.is_file():
                raise AnomedError(f"{path}: lists {f}, which does not exist under {root}")
    if set(found) != {"a", "n"}:
        raise AnomedError(f"{path}: no a-{repetition}/n-{repetition} lines")
    return found["n"], found["a"]
