"""The MediCLIP reference's synthesis recipe ("medsyn"), as its code draws it.

Per image exactly one task is drawn with equal shares: CutPaste, Gauss intensity, Source or
Identity (the image unchanged, empty mask). A task is applied to 1 region, then with probability
0.5 to a second one (the two masks united). Each region is a patch placed with its top-left
corner uniform over the image (no body restriction):

* CutPaste and Gauss: a Perlin patch (a single lattice cell, rotated by U(-90, 90) degrees with
  zero fill, thresholded at 0.3, redrawn until it covers >= 20 % of its box); box sides uniform in
  [0.1, 0.6) (CutPaste) or [0.3, 0.8) (Gauss) of the image.
* CutPaste: a piece of a support image (the image itself included) rotated by U(-45, 45) degrees
  and scaled by 1 + Exp(0.1) or its inverse (cubic spline, clipped to the donor's range), pasted
  inside the patch; the label is the set of pixels that changed by at least 2 grey levels, holes
  filled.
* Gauss: gamma * texture * blurred patch added inside the patch, texture = binarised Gaussian
  noise smoothed with sigma in {4, 7} px, gamma in +-[0.4, 0.6), edge blur sigma U(1, 4) px.
* Source: a sheared, rotated rectangle or ellipse (sides (0.03 + Gamma(2, 0.1)) x image side,
  clipped to [0.2, 0.6)); from a random pixel of it, content swells outward: a pixel at distance
  d from that centre samples d^a / r^(a-1) along the same ray (r: distance to the shape's edge),
  a = 2^U(0.5, 2).

Pixel sizes are the reference's at 224 px and scale with the image side. `cutpaste_blend` and
`source_alpha` switch to the paper's text (Poisson blending; a uniform in [sqrt 2, 4)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from anomed.synthesis.cutpaste import paste, poisson_blend
from anomed.synthesis.perlin import perlin_noise, rotate_zero_fill

REFERENCE_SIDE = 224  # pixel sizes below are the reference's at this side
MEDSYN_TASKS = ("cutpaste", "gauss_intensity", "source", "identity")


def perlin_patch(
    bounds: tuple[float, float], side: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A thresholded, rotated single-cell Perlin patch: bool (h, w) covering >= 20 % of its box,
    box sides uniform in [lo, hi) of the image sides."""
    h, w = (int(rng.integers(round(bounds[0] * s), round(bounds[1] * s))) for s in side)
    for _ in range(200):
        noise = rotate_zero_fill(perlin_noise((h, w), 1, rng), rng.uniform(-90.0, 90.0))
        mask = noise > 0.3
        if mask.mean() >= 0.2:
            return mask
    return mask if mask.any() else np.ones((h, w), bool)


@dataclass(frozen=True)
class Hypershape:
    """A sheared, rotated rectangle or ellipse on its own grid (the reference's Source shape)."""

    mask: np.ndarray  # bool (h, w)
    matrix: np.ndarray  # (2, 2) aligned -> grid coordinates, about the grid centre
    half: np.ndarray  # (2,) half sides of the aligned shape
    ellipse: bool

    def edge_distance(self, centre: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Distance from `centre` (2,) in grid index coordinates to the shape's edge along unit
        `directions` (2, N), found in the aligned frame and mapped back."""
        inv = np.linalg.inv(self.matrix)
        grid_centre = (np.array(self.mask.shape) - 1) / 2
        origin = inv @ (centre - grid_centre)  # (2,)
        d = inv @ directions  # (2, N)
        d = d / np.linalg.norm(d, axis=0)
        if self.ellipse:
            r2 = (self.half**2)[:, None]
            a = (d**2 / r2).sum(0)
            b = (2 * origin[:, None] * d / r2).sum(0)
            c = (origin**2 / self.half**2).sum() - 1
            t = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)
        else:
            with np.errstate(divide="ignore"):
                hi = (self.half[:, None] - origin[:, None]) / d
                lo = (-self.half[:, None] - origin[:, None]) / d
            both = np.concatenate([hi, lo])
            t = np.where(both < 0, np.inf, both).min(0)
        return np.linalg.norm(self.matrix @ (d * t), axis=0)


def hypershape(
    bounds: tuple[float, float], side: tuple[int, int], rng: np.random.Generator
) -> Hypershape:
    """Draw the reference's deformed rectangle or ellipse (equal chance)."""
    lo = np.array([round(bounds[0] * s) for s in side], float)
    hi = np.array([round(bounds[1] * s) for s in side], float)
    size = np.array(
        [
            int(np.clip((0.03 + rng.gamma(2.0, 0.1)) * s, a, b))
            for s, a, b in zip(side, lo, hi, strict=True)
        ],
        float,
    )
    ellipse = bool(rng.integers(2))
    matrix = np.eye(2)
    matrix[0, 1], matrix[1, 0] = rng.normal(0.0, 0.2, size=2)  # shear
    angle = rng.uniform(-np.pi / 2, np.pi / 2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rot @ matrix
    half = (size - 1) / 2
    corners = np.array(np.meshgrid([half[0], -half[0]], [half[1], -half[1]], indexing="ij"))
    corners = corners.reshape(2, 4)

    def extent(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved = m @ corners
        return np.floor(moved.min(1)), np.ceil(moved.max(1))

    low, high = extent(matrix)
    if np.any(high + 1 - low > hi):
        matrix = matrix / np.max((high + 1 - low) / hi)
        low, high = extent(matrix)
    coords = np.array(
        np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(low, high, strict=True)], indexing="ij")
    )
    shape = coords.shape[1:]
    aligned = np.linalg.inv(matrix) @ coords.reshape(2, -1)
    r = (size / 2)[:, None]
    if ellipse:
        inside = (aligned**2 / r**2).sum(0) <= 1
    else:
        inside = np.all(np.abs(aligned) <= r, axis=0)
    return Hypershape(inside.reshape(shape), matrix, size / 2, ellipse)


def _corner(patch_shape: tuple[int, int], side: tuple[int, int], rng) -> tuple[int, int]:
    return tuple(
        int(rng.integers(0, s - p, endpoint=True)) for s, p in zip(side, patch_shape, strict=True)
    )


def _slices(corner: tuple[int, int], shape: tuple[int, ...]) -> tuple[slice, slice]:
    return slice(corner[0], corner[0] + shape[0]), slice(corner[1], corner[1] + shape[1])


@dataclass(frozen=True)
class MedsynSynthesizer:
    """The MediCLIP reference's recipe (see the module doc): image (H, W, 3) in [0, 1] ->
    (anomalous image float32, bool mask)."""

    tasks: tuple[str, ...] = MEDSYN_TASKS  # one drawn per image, equal shares
    cutpaste_blend: Literal["paste", "poisson"] = "paste"
    source_alpha: Literal["log_uniform", "uniform"] = "log_uniform"

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, donors: Sequence[np.ndarray] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image, dtype=np.float32)
        task = self.tasks[int(rng.integers(len(self.tasks)))]
        mask = np.zeros(image.shape[:2], bool)
        if task == "identity":
            return image.copy(), mask
        out = image.copy()
        for _ in range(2):
            out, region = getattr(self, task)(out, rng, [image, *donors])
            mask |= region
            if rng.random() > 0.5:
                break
        if task == "cutpaste":  # the label: pixels that changed (8-bit levels), holes filled
            changed = np.abs(out - image).mean(-1) * 255.0 >= 1.5
            mask = ndimage.binary_fill_holes(mask & changed)
        return out, mask

    # ---- tasks: (image, rng, sources) -> (image, mask of this region) ------------------------
    def cutpaste(self, image, rng, sources) -> tuple[np.ndarray, np.ndarray]:
        side = image.shape[:2]
        patch = perlin_patch((0.1, 0.6), side, rng)
        corner = _corner(patch.shape, side, rng)
        source = sources[int(rng.integers(len(sources)))]
        angle = rng.uniform(-np.pi / 4, np.pi / 4)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = np.array(np.meshgrid([0, patch.shape[0]], [0, patch.shape[1]], indexing="ij"))
        corners = corners.reshape(2, 4)

        def extent(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            moved = m @ corners
            return np.floor(moved.min(1)), np.ceil(moved.max(1))

        low, high = extent(rot)
        max_scale = np.min(0.8 * np.array(source.shape[:2]) / (high - low))
        change = 1 + rng.exponential(0.1)
        scale = min(change if rng.random() < 0.5 else 1 / change, max_scale)
        matrix = scale * rot
        low, high = extent(matrix)
        grid = (high - low).astype(int)
        src = _corner(tuple(grid), source.shape[:2], rng)
        piece = source[_slices(src, tuple(grid))]
        lo_val, hi_val = source.min(axis=(0, 1)), source.max(axis=(0, 1))
        content = np.stack(
            [
                ndimage.affine_transform(
                    piece[..., c], matrix, offset=-low, output_shape=patch.shape
                )
                for c in range(image.shape[-1])
            ],
            axis=-1,
        )
        content = np.clip(content, lo_val, hi_val).astype(np.float32)
        region = np.zeros(side, bool)
        region[_slices(corner, patch.shape)] = patch
        placed = image.copy()
        placed[_slices(corner, patch.shape)] = content
        if self.cutpaste_blend == "poisson":
            return poisson_blend(image, placed, region)
        return paste(image, placed, region), region

    def gauss_intensity(self, image, rng, sources) -> tuple[np.ndarray, np.ndarray]:
        side = image.shape[:2]
        px = min(side) / REFERENCE_SIDE
        patch = perlin_patch((0.3, 0.8), side, rng)
        corner = _corner(patch.shape, side, rng)
        binary = (rng.standard_normal(side) >= 0.0).astype(float)
        texture = ndimage.gaussian_filter(binary, (4, 7)[int(rng.integers(2))] * px)
        texture = (texture - texture.min()) / max(texture.max() - texture.min(), 1e-12)
        if rng.random() <= 0.5:
            gamma = rng.uniform(0.4, 0.6)
        else:
            gamma = rng.uniform(-0.6, -0.4)
        texture = np.clip(gamma * texture, -1.0, 1.0)
        edge = ndimage.gaussian_filter(patch.astype(float), rng.uniform(1.0, 4.0) * px)
        change = np.zeros(side)
        change[_slices(corner, patch.shape)] = (
            texture[_slices(corner, patch.shape)] * edge
        ) * patch
        region = np.zeros(side, bool)
        region[_slices(corner, patch.shape)] = patch
        out = np.clip(image + change[..., None], 0.0, 1.0).astype(np.float32)
        return out, region

    def source(self, image, rng, sources) -> tuple[np.ndarray, np.ndarray]:
        side = image.shape[:2]
        shape = hypershape((0.2, 0.6), side, rng)
        mask = shape.mask
        corner = _corner(mask.shape, side, rng)
        inner = np.zeros_like(mask)
        inner[1:-1, 1:-1] = mask[1:-1, 1:-1]
        pixels = np.argwhere(mask)
        centre = pixels[int(rng.integers(len(pixels)))].astype(float)
        if self.source_alpha == "uniform":
            alpha = rng.uniform(np.sqrt(2.0), 4.0)
        else:
            alpha = 2.0 ** rng.uniform(0.5, 2.0)
        coords = np.argwhere(inner).T.astype(float)  # (2, N)
        offset = coords - centre[:, None]
        dist = np.linalg.norm(offset, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            dirs = offset / dist
        dirs[:, dist == 0] = np.array([[1.0], [0.0]])
        edge = shape.edge_distance(centre, dirs)
        new = dist**alpha / edge ** (alpha - 1)
        mapping = np.array(
            np.meshgrid(*[np.arange(s, dtype=float) for s in mask.shape], indexing="ij")
        )
        mapping[:, inner] = centre[:, None] + new * dirs
        out = image.copy()
        window = _slices(corner, mask.shape)
        for c in range(image.shape[-1]):
            out[window + (c,)] = ndimage.map_coordinates(
                image[window + (c,)], mapping, mode="nearest"
            )
        region = np.zeros(side, bool)
        region[window] = mask
        return np.clip(out, 0.0, 1.0).astype(np.float32), region
