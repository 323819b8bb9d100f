"""Phantom "datasets" of several organs and contrasts, written in the BMAD layout.

They let the zero-shot leave-one-dataset-out protocol run without real data:

- Brain_AD: the brain-slice phantom of `anomed.data.phantoms.brain` (tumour, cyst or mass);
- Liver_AD: a CT-like abdominal slice; hypodense tumours or cysts inside the liver;
- Retina_RESC_AD: an OCT-like B-scan; subretinal fluid, intraretinal cysts or drusen;
- Chest_AD (image-level only, no masks): a chest-film-like image; a nodule or a consolidation.

Every generator returns (image (H, W) float32 in [0, 1], lesion mask, organ mask), both bool; the
lesion always lies inside the organ mask. Synthetic data for testing the pipeline, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anomed.data.phantoms.brain import (
    LESION_KINDS,
    make_abnormal_slice,
    make_brain_slice,
    write_atomically,
)
from anomed.errors import AnomedError

Generated = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, lesion mask, organ mask
Generator = Callable[[np.random.Generator, int, bool], Generated]
MIN_SIZE = 64


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) in [0, 1), each (H, W)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(t, t)


def _radius(x, y, cx, cy, ax, ay, angle=0.0) -> np.ndarray:
    """Normalised elliptic radius: <= 1 inside the ellipse."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return np.sqrt((u / ax) ** 2 + (v / ay) ** 2)


def _soft(r: np.ndarray, minor: float, size: int, edge_px: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage of the ellipse `r <= 1` whose minor semi-axis is `minor`."""
    distance_px = (r - 1) * minor * size  # approximately, near the edge
    return np.clip(0.5 - distance_px / edge_px, 0, 1).astype(np.float32)


def _paint(image: np.ndarray, alpha: np.ndarray, value) -> np.ndarray:
    return image + alpha * (value - image)


def _smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Gaussian-blurred white noise with unit standard deviation."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigma_px)
    return noise / (noise.std() + 1e-6)


def _inside_point(rng: np.random.Generator, region: np.ndarray, radius_px: float):
    """A random (y, x) in pixels at least `radius_px` + 1 inside `region`, and the radius,
    shrunk until it fits (`region` must be non-empty)."""
    depth = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    radius_px = min(radius_px, max(float(depth.max()) - 1.0, 1.0))
    ys, xs = np.nonzero(depth >= radius_px + 1)
    if len(ys) == 0:
        ys, xs = np.nonzero(depth == depth.max())
    i = rng.integers(len(ys))
    return int(ys[i]), int(xs[i]), radius_px


# --------------------------------------------------------------------------- brain


def brain(rng: np.random.Generator, size: int, abnormal: bool) -> Generated:
    """The T2-like brain slice of `anomed.data.phantoms.brain`, with a tumour, cyst or mass."""
    if not abnormal:
        image, organ = make_brain_slice(rng, size)
        return image, np.zeros((size, size), bool), organ
    kind = LESION_KINDS[int(rng.integers(len(LESION_KINDS)))]
    image, organ, mask = make_abnormal_slice(rng, size, kind)
    return image, mask, organ


# --------------------------------------------------------------------------- liver


# (u, v, semi-axes au, av, angle, CT value) in body coordinates, drawn over the liver
_ABDOMEN_ORGANS = (
    (0.62, 0.1, 0.17, 0.3, -0.3, 0.56),  # spleen
    (0.32, -0.38, 0.28, 0.22, 0.0, 0.36),  # stomach
    (-0.08, 0.36, 0.07, 0.09, 0.0, 0.78),  # aorta
    (-0.26, 0.3, 0.08, 0.07, 0.0, 0.62),  # inferior vena cava
    (-0.42, 0.5, 0.14, 0.22, 0.5, 0.7),  # kidneys
    (0.42, 0.5, 0.14, 0.22, -0.5, 0.7),
    (-0.2, 0.62, 0.1, 0.16, 0.2, 0.46),  # psoas muscles
    (0.2, 0.62, 0.1, 0.16, -0.2, 0.46),
    (0.0, 0.64, 0.15, 0.18, 0.0, 0.92),  # vertebral body
    (0.0, 0.86, 0.06, 0.08, 0.0, 0.3),  # spinal canal
)


def _abdomen(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A contrast-CT-like abdominal slice (image left = patient right) and its liver mask."""
    x, y = _grid(size)
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02), 0.52 + rng.uniform(-0.02, 0.02)
    ax, ay = rng.uniform(0.40, 0.46), rng.uniform(0.30, 0.36)
    fat = rng.uniform(0.06, 0.11)  # subcutaneous fat, a fraction of the body radius

    def at(u, v, au, av, angle=0.0):  # an ellipse in body coordinates (u, v in [-1, 1])
        return _radius(x, y, cx + u * ax, cy + v * ay, au * ax, av * ay, angle)

    body = at(0, 0, 1, 1)
    inner = body <= 1 - fat - 0.05
    bowel = 0.3 + 0.1 * (_smooth_noise(rng, size, size / 40) > 0.3)
    image = np.where(body <= 1, 0.2, 0.0) + np.where(body <= 1 - fat, 0.22, 0.0)  # fat, wall
    image = np.where(inner, bowel, image).astype(np.float32)
    liver_r = np.minimum(
        at(-0.38 + rng.uniform(-0.05, 0.05), -0.1, rng.uniform(0.45, 0.55), 0.62, 0.3),
        at(-0.02, -0.42, rng.uniform(0.25, 0.35), 0.22),
    )
    organ = (liver_r <= 1) & inner
    image = np.where(organ, 0.58 + 0.015 * _smooth_noise(rng, size, 1.5), image)
    others = np.zeros_like(organ)
    for u, v, au, av, angle, value in _ABDOMEN_ORGANS:
        r = at(u, v, au, av, angle)
        image = _paint(image, _soft(r, min(au * ax, av * ay), size), value)
        others |= r <= 1.15
    for _ in range(int(rng.integers(3, 6))):  # enhancing portal vessels inside the liver
        vy, vx, vr = _inside_point(rng, organ & ~others, rng.uniform(0.008, 0.018) * size)
        vessel = _radius(x, y, (vx + 0.5) / size, (vy + 0.5) / size, vr / size, 0.6 * vr / size)
        image = _paint(image, _soft(vessel, 0.6 * vr / size, size), 0.72)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.7)
    image = image + 0.03 * noise * (body <= 1)
    return image.astype(np.float32), organ & ~others


def liver(rng: np.random.Generator, size: int, abnormal: bool) -> Generated:
    """CT-like abdomen; abnormal: 1-2 hypodense tumours (soft edge, faint rim) or cysts."""
    image, organ = _abdomen(rng, size)
    mask = np.zeros((size, size), bool)
    x, y = _grid(size)
    for _ in range(int(rng.integers(1, 3)) if abnormal else 0):
        cy, cx, radius = _inside_point(rng, organ & ~mask, rng.uniform(0.03, 0.08) * size)
        radius = max(radius, 1.5)
        aspect, angle = rng.uniform(0.75, 1.0), rng.uniform(0, np.pi)
        r = _radius(x, y, (cx + 0.5) / size, (cy + 0.5) / size, radius / size,
                    aspect * radius / size, angle)  # fmt: skip
        minor = aspect * radius / size
        if rng.random() < 0.5:  # tumour: hypodense, blurred edge, slightly enhancing rim
            image = _paint(image, _soft(r, minor, size, 2.0) * (r > 0.75), 0.5)
            image = _paint(image, _soft(r / 0.8, 0.8 * minor, size, 2.0), rng.uniform(0.36, 0.44))
        else:  # cyst: water-dark, homogeneous, sharp
            image = _paint(image, _soft(r, minor, size), rng.uniform(0.26, 0.31))
        mask |= r <= 1
    return np.clip(image, 0, 1).astype(np.float32), mask, organ


# -------------------------------------------------------------------------- retina

# Retinal layers from Bruch's membrane upwards: (name, thickness as a fraction of the image
# height, thinning at the fovea (negative: thickening), reflectivity)
_RETINA_LAYERS = (
    ("rpe", 0.022, 0.0, 0.92),
    ("outer segments", 0.01, 0.0, 0.35),
    ("ellipsoid zone", 0.01, 0.0, 0.78),
    ("outer nuclear", 0.065, -0.4, 0.12),
    ("outer plexiform", 0.018, 0.7, 0.5),
    ("inner nuclear", 0.03, 0.8, 0.22),
    ("inner plexiform", 0.03, 0.85, 0.48),
    ("ganglion cells", 0.03, 0.9, 0.34),
    ("nerve fibres", 0.035, 0.95, 0.75),
)


def _dome(xs: np.ndarray, centre: float, half_width: float, height: float) -> np.ndarray:
    """A dome profile over the columns: `height` at `centre`, zero beyond `half_width`."""
    return height * np.sqrt(np.clip(1 - ((xs - centre) / half_width) ** 2, 0, None))


def _retina_lesion(rng, xs, size):
    """The kind of a retinal lesion and the thickness (W,) it inserts into the layer stack."""
    kind = ("fluid", "cysts", "drusen")[int(rng.integers(3))]
    centre = rng.uniform(0.2, 0.8)
    if kind == "fluid":  # subretinal fluid: a dark dome lifting the photoreceptors
        return kind, _dome(xs, centre, rng.uniform(0.08, 0.18), rng.uniform(0.03, 0.07))
    if kind == "drusen":  # deposits under the RPE: a bright bump of the RPE
        height = max(rng.uniform(0.02, 0.04), 3.0 / size)
        return kind, _dome(xs, centre, rng.uniform(0.03, 0.07), height) ** 1.5 / height**0.5
    return kind, _dome(xs, centre, rng.uniform(0.07, 0.12), rng.uniform(0.03, 0.06))  # swelling


def _retina_bands(xs, bruch, fovea, scale, kind, extra) -> list[tuple]:
    """(name, top (W,), bottom (W,), reflectivity) of each band, from Bruch's membrane up,
    with subretinal fluid or drusen inserted (the layers above are lifted)."""
    bands, bottom = [], bruch
    for index, (name, thick, thin, value) in enumerate(_RETINA_LAYERS):
        if (kind, index) in (("drusen", 0), ("fluid", 1)):
            bands.append((kind, bottom - extra, bottom, 0.55 if kind == "drusen" else 0.02))
            bottom = bottom - extra
        swelling = extra if (kind, name) == ("cysts", "outer nuclear") else 0.0
        top = bottom - scale * thick * (1 - thin * fovea) - swelling
        bands.append((name, top, bottom, value))
        bottom = top
    return bands


def retina(rng: np.random.Generator, size: int, abnormal: bool) -> Generated:
    """OCT-like B-scan: wavy layered bands over a textured choroid, speckle noise."""
    x, y = _grid(size)
    xs = x[0]
    fovea = np.exp(-(((xs - rng.uniform(0.35, 0.65)) / rng.uniform(0.09, 0.13)) ** 2))
    bruch = rng.uniform(0.62, 0.7) + rng.uniform(-0.08, 0.08) * (xs - 0.5)
    bruch = bruch + rng.uniform(0.0, 0.3) * (xs - 0.5) ** 2
    bruch = bruch + 0.01 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * xs + rng.uniform(0, 1)))
    scale = rng.uniform(0.9, 1.15)
    kind, extra = _retina_lesion(rng, xs, size) if abnormal else ("", np.zeros_like(xs))
    depth = y - bruch  # > 0 below Bruch's membrane
    image = np.where(depth > 0, 0.1 + 0.4 * np.exp(-depth / 0.06), 0.03)  # choroid; vitreous
    image = image * (1 + 0.35 * _smooth_noise(rng, size, size / 60) * (depth > 0))
    mask = np.zeros((size, size), bool)
    bands = _retina_bands(xs, bruch, fovea, scale, kind, extra)
    for name, top, bottom, value in bands:
        inside = (y >= top) & (y < bottom)
        image = np.where(inside, value, image)
        mask |= inside & (name == kind)
    organ = (y >= bands[-1][1]) & (y < bruch)
    if kind == "cysts":
        onl = next(b for b in bands if b[0] == "outer nuclear")
        image, mask = _intraretinal_cysts(rng, image, organ, onl[1:3], extra)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.6)  # axial resolution
    speckle = rng.gamma(3.0, 1 / 3.0, (size, size)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), sigmaX=1.0, sigmaY=0.4)
    return np.clip(image * speckle * 1.1, 0, 1).astype(np.float32), mask, organ


def _intraretinal_cysts(rng, image, organ, onl, swelling: np.ndarray):
    """1-4 dark oval cysts where the retina swells, across the top of the outer nuclear layer
    (`onl`: its top and bottom (W,)) into the outer plexiform layer; kept inside `organ`."""
    size = image.shape[0]
    x, y = _grid(size)
    columns = np.flatnonzero(swelling >= 0.5 * swelling.max())
    mask = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 5))):
        column = int(columns[rng.integers(len(columns))])
        ry = max(rng.uniform(0.3, 0.5) * float(swelling[column]) + 0.01, 1.5 / size)
        rx = ry * rng.uniform(1.0, 1.8)
        cy = min(float(onl[0][column]) + rng.uniform(0.0, 0.6) * ry, float(onl[1][column]) - ry)
        r = _radius(x, y, (column + 0.5) / size, cy, rx, ry)
        image = _paint(image, _soft(r, ry, size) * organ, 0.02)
        mask |= (r <= 1) & organ
    return image, mask


# --------------------------------------------------------------------------- chest


def _chest_film(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A frontal chest-film-like image (air dark, bone and soft tissue bright) and lung mask."""
    x, y = _grid(size)
    jitter = rng.uniform(-0.02, 0.02, 4)
    torso = np.minimum(_radius(x, y, 0.5, 0.7, 0.47, 0.62), _radius(x, y, 0.5, 0.3, 0.5, 0.2))
    image = np.where(torso <= 1, 0.6, 0.06).astype(np.float32)
    lungs = np.zeros((size, size), bool)
    for side in (-1, 1):
        lung = _radius(x, y, 0.5 + side * (0.2 + jitter[0]), 0.48 + jitter[1], 0.15, 0.33)
        dome = 0.72 + jitter[2] + (0.03 if side > 0 else 0) - 0.6 * (x - 0.5 - side * 0.2) ** 2
        lungs |= (lung <= 1) & (y < dome)
    heart = _radius(x, y, 0.56 + jitter[3], 0.66, 0.17, 0.12, -0.25)
    lungs &= (heart > 1) & (np.abs(x - 0.5) > 0.07)
    hilum = np.exp(-np.minimum((x - 0.38) ** 2, (x - 0.62) ** 2) / 0.02 - (y - 0.5) ** 2 / 0.03)
    markings = 0.05 * hilum * (1 + _smooth_noise(rng, size, size / 80))
    lung_alpha = cv2.GaussianBlur(lungs.astype(np.float32), (0, 0), size / 160)
    image = _paint(image, lung_alpha, 0.16 + markings)
    image = _paint(image, _soft(heart, 0.13, size, 2.0), 0.7)
    d = np.abs(x - 0.5)  # distance from the midline
    image = image + 0.04 * (d < 0.03) * (y > 0.12)  # spine behind the mediastinum
    for i in range(9):  # posterior ribs: arcs rising laterally, then curving down
        arc = 0.2 + 0.058 * i + jitter[0] - 0.3 * d + 1.2 * d**2
        image = image + 0.1 * np.exp(-(((y - arc) / 0.009) ** 2)) * (d > 0.04) * (d < 0.42)
    clavicle = 0.2 - 0.15 * (d - 0.05)
    image = image + 0.15 * np.exp(-(((y - clavicle) / 0.012) ** 2)) * (d > 0.04) * (d < 0.38)
    image = image * (1 - 0.15 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))  # gentle vignette
    return image.astype(np.float32), lungs


def chest(rng: np.random.Generator, size: int, abnormal: bool) -> Generated:
    """Chest film; abnormal: a round nodule or a patchy consolidation in one lung."""
    image, organ = _chest_film(rng, size)
    mask = np.zeros((size, size), bool)
    if abnormal:
        x, y = _grid(size)
        cy, cx, radius = _inside_point(rng, organ, rng.uniform(0.025, 0.05) * size)
        if rng.random() < 0.5:  # nodule
            r = _radius(x, y, (cx + 0.5) / size, (cy + 0.5) / size, radius / size, radius / size)
            image = _paint(image, _soft(r, radius / size, size, 1.5), rng.uniform(0.55, 0.7))
            mask = r <= 1
        else:  # consolidation: a cloud of patchy opacity around (cx, cy)
            blob = _radius(x, y, (cx + 0.5) / size, (cy + 0.5) / size, 0.12, 0.09)
            patchy = 0.6 + 0.4 * _smooth_noise(rng, size, size / 40)
            alpha = np.clip((1.2 - blob) * 2, 0, 1) * np.clip(patchy, 0, 1) * organ
            image = _paint(image, 0.8 * alpha, 0.62)
            mask = alpha > 0.35
            mask[cy, cx] = True  # never empty
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.8)
    return np.clip(image + 0.02 * noise, 0, 1).astype(np.float32), mask, organ


# ------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Organ:
    """One phantom dataset: its BMAD folder name, generator and whether masks are written."""

    folder: str
    generate: Generator
    has_masks: bool


ORGANS: dict[str, Organ] = {
    "brain": Organ("Brain_AD", brain, True),
    "liver": Organ("Liver_AD", liver, True),
    "retina": Organ("Retina_RESC_AD", retina, True),
    "chest": Organ("Chest_AD", chest, False),
}


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(np.clip(image.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _write_organ(folder: Path, name: str, counts: dict, size: int, seed: int) -> None:
    organ, stream = ORGANS[name], list(ORGANS).index(name)
    for s, split in enumerate(("valid", "test")):
        for label, sub in ((0, "good"), (1, "Ungood")):
            for i in range(counts[split][label]):
                rng = np.random.default_rng([seed, stream, s, label, i])
                image, mask, _ = organ.generate(rng, size, bool(label))
                file = f"{split}_{sub.lower()}_{i:04d}.png"
                _save(folder / split / sub / "img" / file, image)
                if label and organ.has_masks:
                    _save(folder / split / sub / "anomaly_mask" / file, mask)


def _check(organs: tuple[str, ...], counts: dict, size: int) -> None:
    unknown = [o for o in organs if o not in ORGANS]
    if unknown or not organs or len(set(organs)) != len(organs):
        raise AnomedError(
            f"phantom organs {list(organs)}: give each of {list(ORGANS)} at most once."
        )
    if size < MIN_SIZE:
        raise AnomedError(f"phantom size {size} is too small. Fix: use >= {MIN_SIZE}.")
    for split, pair in counts.items():
        if len(pair) != 2 or min(pair) < 1:
            raise AnomedError(
                f"phantom counts for {split}: {pair}. Fix: give (good, Ungood), each >= 1."
            )


@dataclass
class BmadPhantomConfig:
    """BMAD-layout phantoms: the organs, (good, Ungood) counts per split, size and seed."""

    organs: tuple[str, ...] = ("brain", "liver", "retina")
    n_valid: tuple[int, int] = (16, 16)
    n_test: tuple[int, int] = (20, 20)
    size: int = 128
    seed: int = 0


def write_bmad_phantoms(
    parent: str | Path, cfg: BmadPhantomConfig | None = None, overwrite: bool = False
) -> list[Path]:
    """Write one BMAD dataset per organ under `parent`; returns their folders.

    The same config gives byte-identical files. Written to a hidden sibling and renamed at the
    end; a non-empty `parent` is refused unless `overwrite`."""
    c = cfg or BmadPhantomConfig()
    organs, size, seed = tuple(c.organs), c.size, c.seed
    counts = {"valid": tuple(c.n_valid), "test": tuple(c.n_test)}
    _check(organs, counts, size)
    parent = Path(parent).absolute()

    def write(tmp: Path) -> list[Path]:
        for name in organs:
            _write_organ(tmp / ORGANS[name].folder, name, counts, size, seed)
        (tmp / "README.txt").write_text(
            f"anomed BMAD-layout phantoms (synthetic), organs {list(organs)}, seed {seed}, "
            f"size {size}, (good, Ungood) valid {counts['valid']} test {counts['test']}. "
            "For testing the pipeline only; figures from them say nothing about disease.\n"
        )
        return [parent / ORGANS[name].folder for name in organs]

    return write_atomically(parent, overwrite, write)
