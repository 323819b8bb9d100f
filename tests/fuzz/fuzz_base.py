"""The fuzz suite's corpus, shared part: what a case is, and small writers every kind uses.

Every case is an `InputCase`: `write(folder) -> path` creates the input, `ok` says whether a
correct reader scores it (True) or refuses it with one message naming it and a fix (False), and
`fragment` is a word that message must hold. The writers need no network and no test data.
The cases themselves live in fuzz_images (2D files, names), fuzz_nifti and fuzz_dicom;
fuzz_corpus gathers them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

Writer = Callable[[Path], Path]


@dataclass(frozen=True)
class InputCase:
    """One input for `anomed predict` / the readers, and what a correct reader does with it."""

    kind: str  # image | nifti | dicom | name
    name: str
    write: Writer
    ok: bool  # True: scored; False: one error row naming it with a fix
    fragment: str = ""  # a word the error message must contain (lower-cased compare)
    slow: bool = False  # large files: only in the slow suite
    # not even a candidate input (missing, not an image name, an empty folder): refused while
    # the inputs are collected, so alone it is "nothing to score" (exit 2), not a failed row
    unlisted: bool = False

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gray(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    """A textured uint8 (H, W) image."""
    return (rng(seed).random((h, w)) * 255).astype(np.uint8)


def save(path: Path, image: Image.Image | np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    img.save(path, **kwargs)
    return path


def good_png(folder: Path, name: str = "good.png", seed: int = 0) -> Path:
    return save(folder / name, gray(seed=seed))


def raw(name: str, data: bytes) -> Writer:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def truncated(name: str, data_fn: Callable[[], bytes], keep: float = 0.5) -> Writer:
    def write(folder: Path) -> Path:
        data = data_fn()
        (folder / name).write_bytes(data[: int(len(data) * keep)])
        return folder / name

    return write
