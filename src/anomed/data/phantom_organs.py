"""Several phantom "datasets" of different organs and contrasts, in the BMAD layout.

They let the zero-shot leave-one-dataset-out protocol run here: Brain (the brain-slice phantom),
Liver (a CT-like abdominal slice with hypodense lesions), Retina_RESC (an OCT-like B-scan with
fluid pockets and drusen) and, image-level only, Chest (a film with nodules). Synthetic data for
testing the pipeline, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anomed.data.phantom import (
    LESION_KINDS,
    make_abnormal_slice,
    make_brain_slice,
    write_atomically,
)
from anomed.errors import AnomedError

Generator = Callable[[np.random.Generator, int, bool], tuple[np.ndarray, np.ndarray]]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x / size, y / size


def _ellipse(x, y, cx, cy, ax, ay, angle=0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def _texture(rng: np.random.Generator, size: int, sigma: float, amount: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigma)
    return amount * noise / (noise.std() + 1e-6)


def _inside_point(rng: np.random.Generator, region: np.ndarray, margin: int) -> tuple[int, int]:
    """A random (y, x) at least `margin` pixels inside `region`."""
    inner = cv2.erode(region.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    ys, xs = np.nonzero(inner if inner.any() else region)
    i = rng.integers(len(ys))
    return int(ys[i]), int(xs[i])


def brain(rng: np.random.Generator, size: int, abnormal: bool) -> tuple[np.ndarray, np.ndarray]:
    if not abnormal:
        image, _ = make_brain_slice(rng, size)
        return image, np.zeros((size, size), bool)
    image, _, mask = make_abnormal_slice(rng, size, LESION_KINDS[rng.integers(2)])
    return image, mask


def liver(rng: np.random.Generator, size: int, abnormal: bool) -> tuple[np.ndarray, np.ndarray]:
    """CT-like abdomen: body, a large liver on the image's left, spine, kidneys, noise."""
    x, y = _grid(size)
    body = _ellipse(x, y, 0.5, 0.52, rng.uniform(0.40, 0.46), rng.uniform(0.32, 0.38))
    organ = (
        _ellipse(
            x,
            y,
            rng.uniform(0.33, 0.38),
            rng.uniform(0.44, 0.50),
            rng.uniform(0.17, 0.21),
            rng.uniform(0.15, 0.19),
            rng.uniform(-0.4, 0.4),
        )
        & body
    )
    image = np.where(body, 0.32, 0.0) + _texture(rng, size, size / 40, 0.02) * body
    image = np.where(organ, 0.55 + _texture(rng, size, size / 30, 0.03), image)
    image[_ellipse(x, y, 0.5, 0.74, 0.07, 0.06)] = 0.92  # vertebra
    image[_ellipse(x, y, 0.5, 0.72, 0.025, 0.02)] = 0.15  # spinal canal
    for cx in (0.34, 0.66):
        image[_ellipse(x, y, cx, 0.66, 0.05, 0.07)] = 0.62  # kidneys
    mask = np.zeros((size, size), bool)
    if abnormal:
        r = rng.uniform(0.035, 0.07)
        cy, cx = _inside_point(rng, organ, int(r * size) + 2)
        mask = _ellipse(x, y, cx / size, cy / size, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 3))
        mask &= organ
        image = np.where(mask, rng.uniform(0.22, 0.34), image)
    image = image + rng.normal(0, 0.015, image.shape) * body
    return np.clip(image, 0, 1).astype(np.float32), mask


def retina(rng: np.random.Generator, size: int, abnormal: bool) -> tuple[np.ndarray, np.ndarray]:
    """OCT-like B-scan: wavy layered bands, a bright RPE line, textured choroid, speckle."""
    x, y = _grid(size)
    top = 0.32 + 0.05 * np.sin(2 * np.pi * (x * rng.uniform(0.6, 1.2) + rng.uniform(0, 1)))
    top += 0.08 * np.exp(-((x - rng.uniform(0.4, 0.6)) ** 2) / 0.01)  # foveal dip (downwards)
    depth = y - top
    bands = [
        (0.0, 0.04, 0.85),
        (0.04, 0.10, 0.45),
        (0.10, 0.16, 0.25),
        (0.16, 0.20, 0.55),
        (0.20, 0.23, 0.95),
    ]
    image = np.zeros((size, size), np.float32)
    for lo, hi, value in bands:
        image[(depth >= lo) & (depth < hi)] = value
    choroid = depth >= 0.23
    image[choroid] = (0.5 * np.exp(-(depth[choroid] - 0.23) * 6)).astype(np.float32)
    mask = np.zeros((size, size), bool)
    if abnormal:
        cx = rng.uniform(0.2, 0.8)
        if rng.random() < 0.5:  # fluid pocket: a dark dome between the inner layers
            dome = _ellipse(x, y - top, cx, 0.13, rng.uniform(0.06, 0.12), rng.uniform(0.03, 0.05))
            mask = dome & (depth > 0.05) & (depth < 0.2)
            image[mask] = 0.04
        else:  # drusen: the RPE bulges upwards
            bump = _ellipse(x, y - top, cx, 0.215, rng.uniform(0.04, 0.08), 0.035)
            mask = bump & (depth >= 0.17) & (depth < 0.23)
            image[mask] = 0.97
    speckle = rng.gamma(4.0, 0.25, image.shape).astype(np.float32)
    return np.clip(image * speckle + 0.02 * rng.random(image.shape), 0, 1).astype(np.float32), mask


def chest(rng: np.random.Generator, size: int, abnormal: bool) -> tuple[np.ndarray, np.ndarray]:
    """A chest-film-like image: bright body, two dark lung fields; abnormal: a nodule."""
    x, y = _grid(size)
    image = np.full((size, size), 0.75, np.float32)
    lungs = _ellipse(x, y, 0.32, 0.5, 0.14, 0.3) | _ellipse(x, y, 0.68, 0.5, 0.14, 0.3)
    image[lungs] = 0.25
    image += _texture(rng, size, size / 50, 0.03)
    mask = np.zeros((size, size), bool)
    if abnormal:
        r = rng.uniform(0.03, 0.06)
        cy, cx = _inside_point(rng, lungs, int(r * size) + 2)
        mask = _ellipse(x, y, cx / size, cy / size, r, r)
        image[mask] = 0.7
    return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32), mask


ORGANS: dict[str, tuple[str, Generator, bool]] = {  # name -> (folder, generator, has masks)
    "brain": ("Brain_AD", brain, True),
    "liver": ("Liver_AD", liver, True),
    "retina": ("Retina_RESC_AD", retina, True),
    "chest": ("Chest_AD", chest, False),
}


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image.astype(np.float32) * 255).astype(np.uint8)).save(path)


def _write_organ(
    folder: Path, generate: Generator, has_masks: bool, counts: dict, size: int, seed: int
) -> None:
    for s, split in enumerate(("valid", "test")):
        for label, sub in ((0, "good"), (1, "Ungood")):
            for i in range(counts[split][label]):
                rng = np.random.default_rng([seed, s, label, i])
                image, mask = generate(rng, size, bool(label))
                name = f"{split}_{sub.lower()}_{i:04d}.png"
                _save(folder / split / sub / "img" / name, image)
                if label and has_masks:
                    _save(folder / split / sub / "anomaly_mask" / name, mask)


def write_bmad_phantoms(
    parent: str | Path,
    organs: tuple[str, ...] = ("brain", "liver", "retina"),
    n_valid: tuple[int, int] = (16, 16),
    n_test: tuple[int, int] = (20, 20),
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> list[Path]:
    """Write one BMAD dataset per organ under `parent` (atomically); returns their folders."""
    unknown = [o for o in organs if o not in ORGANS]
    if unknown:
        raise AnomedError(f"unknown phantom organs {unknown}; known: {list(ORGANS)}")
    counts = {"valid": n_valid, "test": n_test}

    def write(tmp: Path) -> list[Path]:
        for organ in organs:
            name, generate, has_masks = ORGANS[organ]
            _write_organ(tmp / name, generate, has_masks, counts, size, seed)
        (tmp / "README.txt").write_text(
            f"anomed BMAD-layout phantoms (synthetic), organs {list(organs)}, seed {seed}, "
            f"size {size}. For testing the pipeline only.\n"
        )
        return [Path(parent).absolute() / ORGANS[o][0] for o in organs]

    return write_atomically(Path(parent).absolute(), overwrite, write)
