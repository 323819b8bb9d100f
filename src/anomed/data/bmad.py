"""The BMAD / MVFA benchmark layout and MVFA's few-shot support files.

    <parent>/<Name>_AD/{valid,test}/{good,Ungood}/img/*
    <parent>/<Name>_AD/{valid,test}/Ungood/anomaly_mask/<same file name>

Brain, Liver and Retina_RESC have masks; Retina_OCT2017, Chest and Histopathology have no
anomaly_mask folder (image-level labels only). The `valid` split is the labelled pool the k normal
+ k abnormal shots are drawn from; `test` is the test set.

MVFA fixes its shots in support files (`dataset/fewshot_seed/<Name>/<k>-shot.txt`)::

    a-0: 4_487.png 9_478.png      abnormal shots of repetition 0 (in valid/Ungood/img/)
    n-0: 8_332.png 2_432.png      normal shots of repetition 0 (in valid/good/img/)

A bare file name is looked up in the `valid` folder of its label, as MVFA does; a name with a
slash is a path relative to the dataset folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from anomed.data.io import is_image_file
from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError

SPLITS = ("valid", "test")  # (training pool, test set)
LABEL_FOLDERS = {NORMAL: "good", ABNORMAL: "Ungood"}
MASK_FOLDER = "anomaly_mask"
_SHOT_KEYS = {NORMAL: "n", ABNORMAL: "a"}


def is_bmad_dataset(root: Path) -> bool:
    """True for a folder holding valid/ and test/, each with a good/ or Ungood/ folder."""
    return all(
        any((root / split / sub).is_dir() for sub in LABEL_FOLDERS.values()) for split in SPLITS
    )


def bmad_class_name(root: Path) -> str:
    """The organ name: Brain_AD -> "brain", Retina_RESC_AD -> "retina_resc"."""
    name = root.name
    return name.removesuffix("_AD").lower()


def read_bmad(root: str | Path) -> DatasetSplits:
    """One BMAD dataset folder (e.g. `Brain_AD`): pool = valid (labelled), test = test."""
    root = Path(os.path.abspath(Path(root).expanduser()))
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        children = [p.name for p in _bmad_children(root)] if root.is_dir() else []
        if children:
            raise AnomedError(
                f"{root}: holds the BMAD datasets {', '.join(children)}, not one dataset. "
                f"Fix: pass one of them, e.g. {root / children[0]}."
            )
        raise AnomedError(
            f"{root}: no {missing[0]}/ folder. Fix: pass one <Name>_AD folder of the BMAD "
            "layout ({valid,test}/{good,Ungood}/img/ inside)."
        )
    with_masks = any((root / split / "Ungood" / MASK_FOLDER).is_dir() for split in SPLITS)
    clsname = bmad_class_name(root)
    pool, test = (_read_split(root / split, clsname, with_masks) for split in SPLITS)
    return DatasetSplits(root.name, root, train=pool, test=test)


def _read_split(split_dir: Path, clsname: str, with_masks: bool) -> list[Sample]:
    """good/img then Ungood/img; Ungood masks by file name when the dataset has masks."""
    samples = []
    for label, sub in LABEL_FOLDERS.items():
        images = _images(split_dir / sub / "img")
        mask_dir = split_dir / sub / MASK_FOLDER
        by_stem = _mask_index(mask_dir) if label == ABNORMAL and with_masks else None
        for image in images:
            masks = () if by_stem is None else (_find_mask(image, mask_dir, by_stem),)
            samples.append(Sample(image, label, masks, clsname))
    return samples


def _images(folder: Path) -> list[Path]:
    """Image files of a required, non-empty img/ folder, sorted by name."""
    if not folder.is_dir():
        raise AnomedError(
            f"{folder}: missing. Fix: a BMAD dataset holds {{valid,test}}/good/img/ and "
            "{valid,test}/Ungood/img/."
        )
    files = (p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = sorted((p for p in files if is_image_file(p)), key=lambda p: p.name)
    if not images:
        raise AnomedError(
            f"{folder}: no images. Fix: put the images there (PNG, JPEG, BMP or TIFF)."
        )
    return images


def _mask_index(mask_dir: Path) -> dict[str, list[Path]]:
    """Mask files of `mask_dir` by stem (empty when the folder is missing)."""
    index: dict[str, list[Path]] = {}
    if mask_dir.is_dir():
        for path in sorted(mask_dir.iterdir()):
            if path.is_file() and is_image_file(path):
                index.setdefault(path.stem, []).append(path)
    return index


def _find_mask(image: Path, mask_dir: Path, by_stem: dict[str, list[Path]]) -> Path:
    """`anomaly_mask/<same name>`, else the one mask with the same stem (x.jpg -> x.png)."""
    candidates = by_stem.get(image.stem, [])
    exact = [p for p in candidates if p.name == image.name]
    if exact or len(candidates) == 1:
        return (exact or candidates)[0]
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise AnomedError(f"{image}: several masks ({names}) in {mask_dir}. Fix: keep one.")
    raise AnomedError(
        f"{image}: no mask {mask_dir / image.name}, although this dataset has {MASK_FOLDER}/ "
        "folders. Fix: add the mask under the same file name, or remove the image."
    )


def _bmad_children(parent: Path) -> list[Path]:
    children = (p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted((p for p in children if is_bmad_dataset(p)), key=lambda p: p.name)


def list_bmad_datasets(parent: str | Path) -> list[Path]:
    """The BMAD dataset folders directly under `parent` sorted by name ([parent] if it is one)."""
    parent = Path(parent)
    if not parent.is_dir():
        raise AnomedError(f"{parent}: no such folder. Fix: check the path.")
    if is_bmad_dataset(parent):
        return [parent]
    found = _bmad_children(parent)
    if not found:
        raise AnomedError(
            f"{parent}: no BMAD datasets (<Name>_AD/valid/ and <Name>_AD/test/) inside. "
            "Fix: pass the folder that holds Brain_AD, Liver_AD, ..."
        )
    return found


# ------------------------------------------------------------- MVFA support files


def _shot_name(file: Path, root: Path, label: int) -> str:
    """MVFA's bare name for a file in valid/<label folder>/img/, else the path under root."""
    file, root = Path(os.path.abspath(file)), Path(os.path.abspath(root))
    if file.parent == root / "valid" / LABEL_FOLDERS[label] / "img":
        name = file.name
    elif file.is_relative_to(root):
        name = file.relative_to(root).as_posix()
    else:
        raise AnomedError(f"{file}: not inside the dataset folder {root}. Fix: pick shots from it.")
    if not name or any(c.isspace() for c in name) or ":" in name:
        raise AnomedError(
            f"{file}: MVFA support files separate names by spaces; this name cannot be "
            "written. Fix: rename the file (no spaces or colons)."
        )
    return name


def _shot_path(name: str, root: Path, label: int) -> Path:
    if "/" in name:
        return root / name
    return root / "valid" / LABEL_FOLDERS[label] / "img" / name


def _parse_shot_file(path: Path) -> dict[str, list[str]]:
    """`key: names` lines -> {key: names}; errors name the file and line."""
    if not path.is_file():
        raise AnomedError(f"{path}: no such MVFA support file. Fix: check --shots-file.")
    entries: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AnomedError(f"{path}: not a UTF-8 text file. Fix: save it as UTF-8 text.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, names = line.partition(":")
        key = key.strip()
        if not sep or key[:2] not in ("a-", "n-") or not key[2:].isdigit():
            raise AnomedError(
                f"{path}:{number}: expected `a-<repetition>: f1 f2 ...` or `n-<repetition>: ...`."
            )
        if key in entries:
            raise AnomedError(f"{path}:{number}: {key} is listed twice. Fix: keep one line.")
        entries[key] = names.split()
    return entries


def write_mvfa_shot_file(
    path: str | Path,
    normal: list[Path],
    abnormal: list[Path],
    root: str | Path,
    repetition: int = 0,
) -> Path:
    """Write the shots of one repetition as MVFA's `a-<r>:` / `n-<r>:` lines.

    Lines of other repetitions already in the file are kept (MVFA files hold several)."""
    path, root = Path(path), Path(root)
    entries = _parse_shot_file(path) if path.exists() else {}
    for label, files in ((ABNORMAL, abnormal), (NORMAL, normal)):
        entries[f"{_SHOT_KEYS[label]}-{repetition}"] = [_shot_name(f, root, label) for f in files]
    order = sorted(entries, key=lambda key: (int(key[2:]), key))  # a-0, n-0, a-1, n-1, ...
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}: {' '.join(entries[key])}\n" for key in order))
    return path


def read_mvfa_shot_file(
    path: str | Path, root: str | Path, repetition: int = 0
) -> tuple[list[Path], list[Path]]:
    """(normal, abnormal) shot files of one repetition of an MVFA support file."""
    path, root = Path(path), Path(root)
    entries = _parse_shot_file(path)
    out: dict[int, list[Path]] = {}
    for label, letter in _SHOT_KEYS.items():
        key = f"{letter}-{repetition}"
        if key not in entries:
            have = sorted({int(k[2:]) for k in entries})
            raise AnomedError(
                f"{path}: no `{key}:` line (repetitions in the file: {have or 'none'}). "
                "Fix: pick a listed repetition (the run's --seed selects it)."
            )
        out[label] = [_shot_path(name, root, label) for name in entries[key]]
        for file in out[label]:
            if not file.is_file():
                raise AnomedError(
                    f"{path}: lists {file.name} ({key}), which does not exist: {file}. "
                    "Fix: pass the dataset folder the file was written for."
                )
    return out[NORMAL], out[ABNORMAL]
