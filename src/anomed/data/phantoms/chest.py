"""Synthetic frontal chest films: normal anatomy, test lesions with exact masks, two layouts.

Each image is drawn like a PA chest radiograph, bright where the body absorbs X-rays: two dark
lung fields with hilar vessels branching into them, curved posterior ribs (and faint anterior
ones) crossing the lungs, clavicles, a bright heart and mediastinum with the trachea's air column,
the spine behind them, the diaphragm domes with the abdomen below (and a gastric air bubble), and
soft tissue out to the body outline. Pose (rotation, shift, scale), shape (lung size, inspiration,
heart size and tilt, dome heights) and exposure (contrast, gamma, heel-effect gradient, noise)
vary from film to film.

Sides follow the radiological convention: the patient's left is on the image's right, so the
heart bulges to the image's right, the aortic knob and gastric bubble sit on the image's right,
and the image-left hemidiaphragm (the patient's right, over the liver) is the higher one.

Test lesions are additive opacities, unlike SAS's gamma change (`anomed.synthesis.sas`), so a
detector trained on SAS must generalise: a *consolidation* (patchy opacity filling part of one
lung zone, sharply bounded by the zone's edge like a fissure), a *nodule* (small round opacity),
and a *pleural effusion* (homogeneous opacity at one lung base with a meniscus rising laterally).
A lesion changes exactly the pixels of its mask (edge pixels at least half covered), always inside
one lung field.

Synthetic data for testing the pipeline, nothing more.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anomed.data.phantoms.brain import write_atomically
from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError

LESION_KINDS = ("consolidation", "nodule", "effusion")
LAYOUTS = ("folder", "data-json")
ZONES = ("upper", "middle", "lower")  # lung thirds between apex and dome, per side
CLSNAME = "chest"
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_LAYOUT_FILES = {
    "folder": "Files: train/normal/, test/normal/, test/abnormal/, test/masks/<stem>_mask.png.\n",
    "data-json": 'Files: images/*.png listed in data.json as {"train": {"0": [...]}, "test": '
    '{"0": [...], "1": [...]}};\nmasks/<same name> for abnormal films (an anomed extension).\n',
}


@dataclass(frozen=True)
class _Chest:
    """Everything random about one film except its lesion; lengths in body units (image = 1)."""

    size: int
    angle: float  # radians
    shift: tuple[float, float]  # (x, y)
    scale: float
    lung: tuple[float, ...]  # centre offset from the midline, half-width, half-height, centre y
    domes: tuple[float, float]  # dome tops (image left, image right); larger y = lower
    dome_curve: float
    mediastinum: float  # half-width of the upper mediastinum
    heart: tuple[float, ...]  # centre x offset, centre y below the image-right dome, a, b, tilt
    body: tuple[float, float]  # neck and chest half-widths
    ribs: tuple[float, float, float]  # first posterior rib y, spacing, half-thickness
    levels: tuple[float, ...]  # background, soft tissue, lung, mediastinum, abdomen
    bubble: tuple[float, float]  # gastric bubble half-axes
    exposure: tuple[float, ...]  # black level, white level, gamma, heel gradient
    vessels: np.ndarray  # (S, 5) segments x0, y0, x1, y1, width
    sigma: float  # noise level
    noise: np.ndarray  # (H, W) standard normals


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _vessel_tree(rng: np.random.Generator, root: np.ndarray, side: int) -> list[list[float]]:
    """Segments of a branching vessel tree from a hilum, fanning out laterally."""
    segments: list[list[float]] = []
    stack = [
        (root, math.pi / 2 - side * (math.pi / 2 + a), 0.09, 0.011, 0)
        for a in rng.uniform([-1.3, -0.5, 0.3, 0.9], [-0.8, 0.0, 0.7, 1.3])
    ]  # directions up, up-lateral, down-lateral, down
    while stack:
        start, direction, length, width, depth = stack.pop()
        length *= rng.uniform(0.8, 1.2)
        end = start + length * np.array([math.cos(direction), -math.sin(direction)])
        segments.append([*start, *end, width])
        if depth < 3:
            for turn in (-1, 1):
                spread = turn * rng.uniform(0.25, 0.55)
                stack.append((end, direction + spread, length * 0.72, width * 0.65, depth + 1))
    return segments


def _sample_chest(rng: np.random.Generator, size: int) -> _Chest:
    """Draw pose, shape, exposure, vessels and noise of one normal film."""
    lung = _floats(rng.uniform([0.2, 0.17, 0.4, 0.53], [0.23, 0.2, 0.44, 0.57]))
    top = float(rng.uniform(0.64, 0.71))
    domes = (top, top + float(rng.uniform(0.01, 0.04)))
    hila_y = lung[3] - 0.1
    vessels = []
    for side in (-1, 1):
        root = np.array([0.5 + side * (0.07 + 0.02 * rng.random()), hila_y])
        vessels += _vessel_tree(rng, root, side)
    return _Chest(
        size=size,
        angle=float(rng.uniform(-0.05, 0.05)),
        shift=_floats(rng.uniform([-0.03, -0.03], [0.03, 0.02])),
        scale=float(rng.uniform(0.93, 1.04)),
        lung=lung,
        domes=domes,
        dome_curve=float(rng.uniform(2.0, 3.0)),
        mediastinum=float(rng.uniform(0.05, 0.07)),
        heart=_floats(rng.uniform([0.04, -0.09, 0.17, 0.12, 0.2], [0.08, -0.06, 0.21, 0.15, 0.4])),
        body=_floats(rng.uniform([0.08, 0.46], [0.1, 0.52])),
        ribs=_floats(rng.uniform([0.13, 0.052, 0.01], [0.16, 0.058, 0.013])),
        levels=_floats(rng.uniform([0.02, 0.48, 0.12, 0.66, 0.58], [0.06, 0.58, 0.2, 0.76, 0.66])),
        bubble=_floats(rng.uniform([0.03, 0.02], [0.07, 0.04])),
        exposure=_floats(rng.uniform([0.0, 0.9, 0.8, -0.06], [0.05, 1.0, 1.25, 0.06])),
        vessels=np.asarray(vessels, dtype=np.float32),
        sigma=float(rng.uniform(0.008, 0.02)),
        noise=rng.standard_normal((size, size), dtype=np.float32),
    )


def _body_grid(c: _Chest) -> tuple[np.ndarray, np.ndarray]:
    """Body coordinates (x, y) of every pixel centre, each (H, W) float32."""
    t = (np.arange(c.size, dtype=np.float32) + 0.5) / c.size
    v, u = np.meshgrid(t, t, indexing="ij")
    du, dv = u - 0.5 - c.shift[0], v - 0.5 - c.shift[1]
    cos, sin = math.cos(c.angle) / c.scale, math.sin(c.angle) / c.scale
    return 0.5 + cos * du + sin * dv, 0.5 - sin * du + cos * dv


def _to_pixels(c: _Chest, points: np.ndarray) -> np.ndarray:
    """Body coordinates (N, 2) -> pixel coordinates (N, 2) (x, y), the inverse of `_body_grid`."""
    cos, sin = math.cos(c.angle) * c.scale, math.sin(c.angle) * c.scale
    dx, dy = points[:, 0] - 0.5, points[:, 1] - 0.5
    u = 0.5 + c.shift[0] + cos * dx - sin * dy
    v = 0.5 + c.shift[1] + sin * dx + cos * dy
    return np.stack([u, v], axis=1) * c.size - 0.5


def _ramp(sd: np.ndarray, eps: float) -> np.ndarray:
    """Anti-aliased inside weight from a signed distance (negative inside)."""
    return np.clip(0.5 - sd / eps, 0.0, 1.0)


def _ellipse(x, y, centre, axes, angle=0.0) -> np.ndarray:
    """Approximate signed distance to a rotated ellipse (exact across its minor axis)."""
    dx, dy = x - centre[0], y - centre[1]
    cos, sin = math.cos(angle), math.sin(angle)
    ex, ey = cos * dx + sin * dy, cos * dy - sin * dx
    return (np.hypot(ex / axes[0], ey / axes[1]) - 1) * min(axes)


def _dome(c: _Chest, x: np.ndarray, side: int) -> np.ndarray:
    """Height y of the hemidiaphragm at x on one side (-1 image left, +1 image right)."""
    lateral = side * (x - 0.5) - c.lung[0]  # > 0 beyond the dome's peak
    return c.domes[(side + 1) // 2] + c.dome_curve * lateral**2 * np.where(lateral > 0, 1, 0.25)


def _heart_sd(c: _Chest, x, y) -> np.ndarray:
    dx, cy, a, b, tilt = c.heart
    return _ellipse(x, y, (0.5 + dx, c.domes[1] + cy), (a, b), tilt)


def _lung_sd(c: _Chest, x, y, side: int) -> np.ndarray:
    """Signed distance to one lung field: an ellipse cut by the dome below, the mediastinum
    medially, and the heart and aortic knob."""
    offset, half_w, half_h, cy = c.lung
    sd = _ellipse(x, y, (0.5 + side * offset, cy), (half_w, half_h))
    sd = np.maximum(sd, y - _dome(c, x, side))
    sd = np.maximum(sd, c.mediastinum - side * (x - 0.5))
    sd = np.maximum(sd, -_heart_sd(c, x, y))
    if side > 0:
        knob = _ellipse(x, y, (0.5 + c.mediastinum + 0.01, cy - 0.23), (0.035, 0.03))
        sd = np.maximum(sd, -knob)
    return sd


def _zones(c: _Chest, y: np.ndarray) -> np.ndarray:
    """Zone index 0, 1, 2 (upper, middle, lower): thirds between apex and dome top."""
    apex = c.lung[3] - c.lung[2]
    span = (max(c.domes) + 0.03 - apex) / 3
    return np.clip(np.floor((y - apex) / span), 0, 2).astype(np.int8)


def _band(offset: np.ndarray, half: float, eps: float) -> np.ndarray:
    """A bone band of half-thickness `half` around offset 0, with brighter cortical edges."""
    t = np.abs(offset) / half
    return _ramp((t - 1) * half, eps) * (0.65 + 0.35 * np.minimum(t, 1) ** 2)


def _bones(c: _Chest, x, y, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Added brightness (H, W) of the ribs and clavicles, and of the spine."""
    d = np.abs(x - 0.5)
    wall = c.lung[0] + c.lung[1] + 0.02
    thorax = _ramp(d - wall, 0.02) * _ramp(0.035 - d, eps)  # between spine and lateral wall
    first, spacing, half = c.ribs
    ribs = np.zeros_like(x)
    for i in range(11):  # posterior ribs: level medially, curving down towards the wall
        arc = first + i * spacing - 0.15 * d + 1.3 * d**2
        ribs += 0.1 * _band(y - arc, half, eps)
    ribs *= _ramp(y - max(c.domes) - 0.1, 0.04)  # the lowest fade out over the abdomen
    for i in range(6):  # anterior ribs: from the wall down and medially, fainter
        arc = first + 0.05 + i * 1.3 * spacing + 0.45 * (wall - d)
        ribs += 0.035 * _band(y - arc, 0.8 * half, eps) * _ramp(0.15 - d, 0.03)
    clavicle = c.lung[3] - c.lung[2] + 0.06 - 0.32 * d + 0.35 * d**2
    ribs += 0.15 * _band(y - clavicle, 1.25 * half, eps) * _ramp(d - 0.36, 0.02)
    vertebrae = 0.85 + 0.15 * np.cos(2 * np.pi * y / 0.055)
    return ribs * thorax, 0.045 * _ramp(d - 0.035, eps) * vertebrae


def _vessels(c: _Chest) -> np.ndarray:
    """Lung markings: the vessel trees drawn in pixels and slightly blurred, (H, W) in [0, 1]."""
    canvas = np.zeros((c.size, c.size), np.float32)
    ends = _to_pixels(c, c.vessels[:, :2]), _to_pixels(c, c.vessels[:, 2:4])
    shift = 4  # sub-pixel precision of cv2.line
    for p0, p1, w in zip(*ends, c.vessels[:, 4], strict=True):
        thick = max(int(round(w * c.size * c.scale)), 1)
        a, b = (tuple(int(v) for v in np.round(p * 2**shift)) for p in (p0, p1))
        cv2.line(canvas, a, b, 1.0, thick, cv2.LINE_AA, shift)
    return cv2.GaussianBlur(canvas, (0, 0), max(0.6 * c.size / 224, 0.5))


def _soft_tissue(c: _Chest, x, y, eps: float) -> np.ndarray:
    """Body outline, abdomen below the domes with the gastric bubble, heart and mediastinum."""
    background, soft, lung_level, medi, abdomen = c.levels
    d = np.abs(x - 0.5)
    neck, chest = c.body
    t = np.clip(y / 0.17, 0, 1)
    half_width = neck + (chest - neck) * t * t * (3 - 2 * t)  # neck widening to the shoulders
    body = _ramp(d - half_width, eps)
    image = background + body * (soft * (1 - 0.25 * (d / half_width) ** 4) - background)
    dome = np.where(x < 0.5, _dome(c, x, -1), _dome(c, x, 1))
    image += body * _ramp(dome - y, 2 * eps) * (abdomen - soft)
    bubble = _ellipse(x, y, (0.5 + c.lung[0], c.domes[1] + c.bubble[1] + 0.02), c.bubble)
    image -= 0.6 * _ramp(bubble, 3 * eps) * (abdomen - lung_level)
    mediastinum = _ramp(d - c.mediastinum - 0.005, 2 * eps) * _ramp(0.02 - y, 4 * eps)
    mediastinum = np.maximum(mediastinum, _ramp(_heart_sd(c, x, y), eps))
    image += mediastinum * _ramp(y - dome, 2 * eps) * body * (medi - image)  # rests on the domes
    trachea = _ramp(np.abs(x - 0.5) - 0.012, eps) * _ramp(y - c.lung[3] + 0.22, 4 * eps)
    return image - 0.15 * trachea


def _lungs(c: _Chest, x, y, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased lung weight (H, W) and zone labels (see `_render`)."""
    labels = np.zeros(x.shape, np.int8)
    lungs = np.zeros_like(x)
    for index, side in enumerate((-1, 1)):
        sd = _lung_sd(c, x, y, side)
        lungs = np.maximum(lungs, _ramp(sd, eps))
        labels[sd < 0] = 1 + 3 * index
    inside = labels > 0
    labels[inside] += _zones(c, y)[inside]
    return lungs, labels


def _render(c: _Chest) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free attenuation image before exposure, and the lung-zone labels (H, W) int8:
    0 outside the lungs, 1 + 3 * side + zone inside (side 0 image left, 1 image right)."""
    x, y = _body_grid(c)
    eps = 1.2 / (c.size * c.scale)
    image = _soft_tissue(c, x, y, eps)
    lungs, labels = _lungs(c, x, y, eps)
    d, (lung_level, cy, half_h) = np.abs(x - 0.5), (c.levels[2], c.lung[3], c.lung[2])
    hila = np.exp(-(((d - c.mediastinum - 0.03) / 0.03) ** 2 + ((y - cy + 0.1) / 0.05) ** 2))
    depth = 1 + 0.3 * ((y - cy) / half_h) ** 2  # denser at apex and base
    image += lungs * (lung_level * depth + 0.09 * _vessels(c) + 0.1 * hila - image)
    ribs, spine = _bones(c, x, y, eps)
    return image + ribs * (0.4 + 0.6 * lungs) + spine, labels


def _finish(c: _Chest, image: np.ndarray) -> np.ndarray:
    """Exposure (levels, gamma, heel-effect gradient) and correlated noise; clip to [0, 1]."""
    black, white, gamma, heel = c.exposure
    ramp = np.linspace(-0.5, 0.5, c.size, dtype=np.float32)[:, None]  # (H, 1)
    image = np.clip(image * (1 + heel * ramp), 0, 1) ** gamma
    noise = cv2.GaussianBlur(c.noise, (0, 0), 0.7) * 1.6
    return np.clip(black + (white - black) * image + c.sigma * noise, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ lesions


def _smooth_field(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Smooth noise with zero mean and unit standard deviation, (H, W) float32."""
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma_px)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _side(rng: np.random.Generator, labels: np.ndarray) -> tuple[int, np.ndarray]:
    """A random side (0 image left, 1 image right) and its lung field, bool (H, W)."""
    side = int(rng.integers(2))
    return side, (labels > 0) & ((labels - 1) // 3 == side)


def _nodule(rng: np.random.Generator, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weight, mask) (H, W) of a small round opacity, denser at its centre, inside one lung."""
    size, (_, lung) = labels.shape[0], _side(rng, labels)
    depth = cv2.distanceTransform(lung.astype(np.uint8), cv2.DIST_L2, 5)
    radius = float(rng.uniform(0.015, 0.04) * size)
    while not (depth >= radius + 2).any() and radius > 1.5:
        radius *= 0.8
    rows, cols = np.nonzero(depth >= min(radius + 2, depth.max()))
    pick = rng.integers(len(rows))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(yy - rows[pick], xx - cols[pick])
    wobble = 1 + 0.08 * np.cos(
        3 * np.arctan2(yy - rows[pick], xx - cols[pick]) + rng.uniform(0, 2 * np.pi)
    )
    extent = _ramp(r - radius * wobble, 1.5) * lung
    mask = extent >= 0.5
    return extent * (1 - 0.3 * np.clip(r / radius, 0, 1) ** 2) * mask, mask


def _consolidation(rng: np.random.Generator, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weight, mask) (H, W) of a patchy opacity centred in one lung zone; half of them stop
    sharply at the zone's upper edge, as lobar pneumonia stops at a fissure."""
    size = labels.shape[0]
    codes = [code for code in range(1, 7) if (labels == code).sum() > 0.002 * size * size]
    code = codes[rng.integers(len(codes))]
    rows, cols = np.nonzero(labels == code)
    pick = rng.integers(len(rows))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = rng.uniform(0.06, 0.13) * size
    falloff = 1 - (np.hypot(yy - rows[pick], xx - cols[pick]) / radius) ** 2
    lung = (labels > 0) & ((labels - 1) // 3 == (code - 1) // 3)
    if rng.random() < 0.5:
        lung &= labels >= code
    region = (falloff + 0.6 * _smooth_field(rng, size, 0.035 * size) > 0) | (falloff > 0.6)
    region = cv2.morphologyEx((region & lung).astype(np.uint8), cv2.MORPH_OPEN, _CROSS) > 0
    region[rows[pick], cols[pick]] = True  # never empty
    edge = cv2.GaussianBlur(region.astype(np.float32), (5, 5), 0.8)  # fades in at the border
    patchy = np.clip(0.7 + 0.3 * _smooth_field(rng, size, 0.02 * size), 0.3, 1.0)
    return edge * patchy * region, region


def _effusion(rng: np.random.Generator, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weight, mask) (H, W) of fluid at one lung base, its surface rising laterally."""
    size, (side, lung) = labels.shape[0], _side(rng, labels)
    rows = np.arange(size, dtype=np.float32)[:, None]  # (H, 1)
    has = lung.any(axis=0)
    bottom = np.where(has, size - 1 - np.argmax(lung[::-1], axis=0), 0).astype(np.float32)
    cols = np.nonzero(has)[0]
    medial, lateral = (cols.max(), cols.min()) if side == 0 else (cols.min(), cols.max())
    t = np.clip((np.arange(size) - medial) / (lateral - medial), 0, 1)  # 0 medially, 1 laterally
    height = rng.uniform(0.05, 0.12) * size + rng.uniform(0.03, 0.07) * size * t**1.5
    surface = bottom.max() - height  # (W,) fluid surface row
    extent = (np.clip((rows - surface) / 3.0 + 0.5, 0, 1) * lung).astype(np.float32)
    mask = extent >= 0.5
    return 0.95 * extent * mask, mask


_LESIONS = {"nodule": _nodule, "consolidation": _consolidation, "effusion": _effusion}
_LEVELS = {"nodule": (0.25, 0.38), "consolidation": (0.5, 0.62), "effusion": (0.56, 0.66)}


def _add_lesion(
    rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Paint one lesion of `kind` on the attenuation image; return it and the lesion mask.
    A nodule adds its level; the other kinds blend towards theirs."""
    weight, mask = _LESIONS[kind](rng, labels)
    level = float(rng.uniform(*_LEVELS[kind]))
    painted = image + level * weight if kind == "nodule" else image + weight * (level - image)
    if not mask.any():  # a lesion squeezed into a sliver of lung: keep its strongest pixel
        mask[np.unravel_index(np.argmax(weight), weight.shape)] = True
    return painted.astype(np.float32), mask


# ----------------------------------------------------------------------------- public API


def make_chest_film(rng: np.random.Generator, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """A normal chest film (H, W) float32 in [0, 1] and its lung-field mask (H, W) bool."""
    chest = _sample_chest(rng, size)
    image, labels = _render(chest)
    return _finish(chest, image), labels > 0


def make_abnormal_chest_film(
    rng: np.random.Generator, size: int = 224, kind: str = "consolidation"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A film with one lesion: (image (H, W) float32, lung mask, lesion mask), both bool.

    The anatomy is drawn first, exactly as `make_chest_film` draws it from the same generator
    state, so a normal and an abnormal film from equal states differ only by the lesion."""
    if kind not in LESION_KINDS:
        raise AnomedError(f"unknown chest lesion kind {kind!r}. Fix: use one of {LESION_KINDS}.")
    chest = _sample_chest(rng, size)
    image, labels = _render(chest)
    image, mask = _add_lesion(rng, image, labels, kind)
    return _finish(chest, image), labels > 0, mask


def lung_zones(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """The lung-zone labels of the film `make_chest_film` draws from the same generator state:
    int8 (H, W), 0 outside the lungs, 1 + 3 * side + zone inside (side 0 = image left,
    zone 0, 1, 2 = upper, middle, lower; see ZONES)."""
    return _render(_sample_chest(rng, size))[1]


@dataclass(frozen=True)
class _Item:
    split: str  # "train" or "test"
    label: int
    stem: str
    key: tuple[int, int, int]  # generator seed: (seed, split index, i)
    kind: str = ""  # lesion kind of an abnormal film


def _items(counts: tuple[int, int, int], seed: int, kinds: tuple[str, ...]) -> list[_Item]:
    n_train, n_normal, n_abnormal = counts
    items = [_Item("train", NORMAL, f"train_normal_{i:04d}", (seed, 0, i)) for i in range(n_train)]
    items += [_Item("test", NORMAL, f"test_normal_{i:04d}", (seed, 1, i)) for i in range(n_normal)]
    for i in range(n_abnormal):
        kind = kinds[i % len(kinds)]
        items.append(_Item("test", ABNORMAL, f"test_abnormal_{i:04d}_{kind}", (seed, 2, i), kind))
    return items


def _paths(item: _Item, layout: str) -> tuple[Path, Path | None]:
    """(image, mask) paths relative to the dataset root; mask None for a normal film."""
    name = f"{item.stem}.png"
    if layout == "data-json":
        return Path("images", name), Path("masks", name) if item.label == ABNORMAL else None
    folder = Path(item.split, "abnormal" if item.label == ABNORMAL else "normal")
    mask = Path(item.split, "masks", f"{item.stem}_mask.png") if item.label == ABNORMAL else None
    return folder / name, mask


def _save_png(path: Path, image: np.ndarray) -> None:
    """8-bit grayscale PNG from a [0, 1] float image or a bool mask (-> 0/255)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image.astype(np.float32) * 255).astype(np.uint8)).save(path)


def _write_all(tmp: Path, root: Path, items: list[_Item], size: int, layout: str) -> DatasetSplits:
    """Write every file under `tmp`; return samples whose paths point under `root`."""
    splits = DatasetSplits(root.name, root)
    listing: dict[str, dict[str, list[str]]] = {"train": {"0": []}, "test": {"0": [], "1": []}}
    for item in items:
        rng = np.random.default_rng(item.key)
        rel, rel_mask = _paths(item, layout)
        if item.label == ABNORMAL:
            image, _, mask = make_abnormal_chest_film(rng, size, item.kind)
            _save_png(tmp / rel_mask, mask)
        else:
            image = make_chest_film(rng, size)[0]
        _save_png(tmp / rel, image)
        masks = (root / rel_mask,) if rel_mask is not None else ()
        getattr(splits, item.split).append(Sample(root / rel, item.label, masks, CLSNAME))
        listing[item.split].setdefault(str(item.label), []).append(rel.name)
    if layout == "data-json":
        (tmp / "data.json").write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")
    return splits


@dataclass
class ChestPhantomConfig:
    """A chest-film phantom set: counts, film size, seed, layout and the lesion kinds."""

    n_train: int = 64
    n_test_normal: int = 40
    n_test_abnormal: int = 40
    size: int = 224
    seed: int = 0
    layout: str = "folder"  # or "data-json" (PPAD's)
    lesion_kinds: tuple[str, ...] = LESION_KINDS


def write_chest_phantoms(
    root: str | Path, cfg: ChestPhantomConfig | None = None, overwrite: bool = False
) -> DatasetSplits:
    """Write a chest-film phantom dataset and return its splits (clsname "chest").

    layout "folder": train/normal/, test/normal/, test/abnormal/, test/masks/<stem>_mask.png.
    layout "data-json" (PPAD's): images/*.png and data.json {"train": {"0": [names]},
    "test": {"0": [...], "1": [...]}}; masks in masks/<same name> (an anomed extension).
    Abnormal films cycle through `lesion_kinds`. The write is atomic (see `write_atomically`);
    a non-empty `root` is refused unless `overwrite`. Equal arguments give byte-identical files."""
    c = cfg or ChestPhantomConfig()
    counts = (c.n_train, c.n_test_normal, c.n_test_abnormal)
    _check(*counts, c.size, c.seed, c.layout, c.lesion_kinds)
    root = Path(root).absolute()
    items = _items(counts, c.seed, tuple(c.lesion_kinds))
    readme = _readme(c.layout, c.seed, c.size, counts, c.lesion_kinds)

    def writer(tmp: Path) -> DatasetSplits:
        splits = _write_all(tmp, root, items, c.size, c.layout)
        (tmp / "README.txt").write_text(readme, encoding="utf-8")
        return splits

    return write_atomically(root, overwrite, writer)


def _check(n_train, n_normal, n_abnormal, size, seed, layout, kinds) -> None:
    if layout not in LAYOUTS:
        raise AnomedError(f"chest phantom layout {layout!r} is unknown. Fix: use one of {LAYOUTS}.")
    if size < 64:
        raise AnomedError(f"chest phantom size {size} is too small. Fix: use >= 64.")
    if min(n_normal, n_abnormal, seed) < 0 or n_train < 1 or n_normal + n_abnormal < 1:
        raise AnomedError(
            "chest phantom: counts and seed must be >= 0, with at least one training film and "
            "one test film. Fix: check n_train, n_test_normal, n_test_abnormal and seed."
        )
    if set(kinds) - set(LESION_KINDS) or (n_abnormal > 0 and not kinds):
        raise AnomedError(
            f"chest phantom lesion_kinds {tuple(kinds)!r} is invalid. "
            f"Fix: choose a non-empty subset of {LESION_KINDS}."
        )


def _readme(layout: str, seed: int, size: int, counts: tuple[int, int, int], kinds) -> str:
    return (
        "anomed synthetic chest-film phantom dataset (not patient data), written by\n"
        f"anomed.data.phantoms.chest.write_chest_phantoms (layout {layout}, seed {seed}, size "
        f"{size}).\n{counts[0]} normal training films; {counts[1]} normal and {counts[2]} abnormal "
        f"test films, one lesion each, kinds cycled: {', '.join(kinds)}.\n"
        + _LAYOUT_FILES[layout]
        + "Masks: 255 = lesion, exactly the pixels it changes, always in one lung field.\n"
        "The patient's left is on the image's right (the heart bulges to the right).\n"
        "The same arguments give byte-identical files.\n"
    )


def write_dicom_radiograph(
    path: str | Path,
    image: np.ndarray,
    uid_seed: str = "anomed-chest",
    modality: str = "CR",
    spacing_mm: float = 0.5,
) -> Path:
    """Write a film (H, W) in [0, 1] as a single-frame 12-bit CR or DX DICOM file (no plane
    geometry, ImagerPixelSpacing only, as a radiograph is stored). UIDs derive from
    `uid_seed` (study and series from its part before the last '/', so films seeded
    "p1/a" and "p1/b" share one series), so the same call writes the same file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    classes = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}
    if modality not in classes or np.ndim(image) != 2:
        raise AnomedError(f"radiograph: modality {modality!r}, shape {np.shape(image)}. Fix: "
                          "use CR or DX and an (H, W) image.")  # fmt: skip
    group = uid_seed.rsplit("/", 1)[0]
    sop = generate_uid(entropy_srcs=[uid_seed, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = classes[modality], sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = classes[modality], sop
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[group, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[group, "series"])
    ds.PatientName, ds.PatientID, ds.Modality = f"Phantom^{group}", group[:64], modality
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 1, 1, "chest phantom"
    ds.Rows, ds.Columns = np.shape(image)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [f"{spacing_mm:g}", f"{spacing_mm:g}"]
    stored = np.round(np.clip(image, 0, 1) * 4095).astype("<u2")
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
