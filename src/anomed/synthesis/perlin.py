"""Random masks for anomaly synthesis: Perlin noise and masks, lesion-sized Perlin blobs, the body
(foreground) mask they are kept inside, and the draw-until-visible loop the tasks share.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy import ndimage

MIN_CHANGE = 0.02  # a draw counts as visible when the mean |change| inside its mask reaches this
MAX_TRIES = 10  # draws per task call before keeping the most visible one


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade 6t^5 - 15t^4 + 10t^3: zero first and second derivative at 0 and 1."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(
    shape: tuple[int, int], scale: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """2D gradient (Perlin) noise of `shape` (H, W) with `scale` lattice cells per axis.

    Random unit gradients sit on a (sy + 1, sx + 1) lattice; values lie roughly in [-1, 1] and are
    0 on the lattice points. Returns float32 (H, W).
    """
    height, width = shape
    sy, sx = (int(scale), int(scale)) if np.ndim(scale) == 0 else (int(scale[0]), int(scale[1]))
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(sy + 1, sx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # (sy+1, sx+1, 2) as (gy, gx)
    y = np.arange(height) * (sy / height)
    x = np.arange(width) * (sx / width)
    iy, ix = y.astype(int), x.astype(int)  # lattice cell of each row / column
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]  # (H, 1), (1, W) offsets inside the cell

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[(iy + dy)[:, None], (ix + dx)[None, :]]  # (H, W, 2)
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)  # (H, W)

    ty, tx = _fade(fy), _fade(fx)
    top = corner(0, 0) + tx * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + tx * (corner(1, 1) - corner(1, 0))
    return (np.sqrt(2.0) * (top + ty * (bottom - top))).astype(np.float32)


def rotate_zero_fill(noise: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre, filling the uncovered corners with 0 (as DRAEM's imgaug Affine)."""
    height, width = noise.shape
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(noise, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _usable(foreground: np.ndarray | None) -> np.ndarray | None:
    """An empty foreground carries no information: treat it as 'the whole image'."""
    return foreground if foreground is not None and foreground.any() else None


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale: int = 0,
    max_scale: int = 6,
    threshold: float = 0.5,
    foreground: np.ndarray | None = None,
    rotate: bool = True,
    max_tries: int = 50,
) -> np.ndarray:
    """A DRAEM-style Perlin mask: bool (H, W), never empty.

    Scales are 2**k per axis with k drawn from [min_scale, max_scale); the noise is rotated by a
    random angle in [-90, 90) degrees and thresholded. Draws repeat until the mask (intersected
    with `foreground`, when given) is non-empty; after `max_tries` failed draws against a
    foreground it returns the foreground itself (it must then be tiny).
    """
    foreground = _usable(foreground)
    for _ in range(max_tries):
        sy, sx = 2 ** rng.integers(min_scale, max_scale, size=2)
        noise = perlin_noise(shape, (int(sy), int(sx)), rng)
        if rotate:
            noise = rotate_zero_fill(noise, rng.uniform(-90.0, 90.0))
        mask = noise > threshold
        if foreground is not None:
            mask &= foreground
        if mask.any():
            return mask
    if foreground is not None:
        return foreground.copy()
    raise ValueError(f"no Perlin mask above threshold {threshold} in {max_tries} draws")


def blob_patch(
    half_axes: tuple[float, float],
    rng: np.random.Generator,
    max_scale: int = 3,
    roughness: float = 0.5,
) -> np.ndarray:
    """A Perlin-perturbed rotated ellipse on its own square canvas: bool (S, S), centre inside.

    The boundary sits where r^2 = 1 + roughness * noise, with r the normalised elliptic radius
    (semi-axes `half_axes` in pixels, random rotation) and noise Perlin noise of 2**k cells per
    axis, k in [0, max_scale): a closed, lobed outline instead of the straight cuts that a
    thresholded, rotated noise patch leaves at its corners.
    """
    half = int(np.ceil(1.3 * max(half_axes))) + 1
    d = np.arange(-half, half + 1, dtype=float)
    dy, dx = d[:, None], d[None, :]  # (S, 1), (1, S)
    angle = rng.uniform(0.0, np.pi)
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    r2 = (u / max(half_axes[1], 0.5)) ** 2 + (v / max(half_axes[0], 0.5)) ** 2  # (S, S)
    sy, sx = 2 ** rng.integers(0, max_scale, size=2)
    noise = perlin_noise((d.size, d.size), (int(sy), int(sx)), rng)
    patch = r2 < 1.0 + roughness * noise
    patch[half, half] = True
    return patch


def blob_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    size_range: tuple[float, float] = (0.1, 0.5),
    foreground: np.ndarray | None = None,
    max_tries: int = 20,
) -> np.ndarray:
    """A lesion-like Perlin blob (see `blob_patch`) placed in the image: bool (H, W), never empty.

    Its diameters are `size_range` fractions of the image height and width; it is centred on a
    random foreground pixel and kept inside the foreground. Draws with less than half of the blob
    inside the foreground are redrawn (MediCLIP's rule); after `max_tries` the largest is kept.
    """
    height, width = shape
    foreground = _usable(foreground)
    centres = np.argwhere(foreground) if foreground is not None else None
    best = np.zeros(shape, dtype=bool)
    for _ in range(max_tries):
        half_axes = rng.uniform(*size_range, size=2) * np.array(shape) / 2  # (ay, ax) pixels
        patch = blob_patch((float(half_axes[0]), float(half_axes[1])), rng)
        if centres is None:
            cy, cx = rng.integers(0, height), rng.integers(0, width)
        else:
            cy, cx = centres[rng.integers(len(centres))]
        mask = _place(patch, (int(cy), int(cx)), shape)
        if foreground is not None:
            mask &= foreground
        if mask.sum() > best.sum():
            best = mask
        if mask.sum() >= 0.5 * patch.sum():
            return mask
    return best


def _place(patch: np.ndarray, centre: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Put `patch` centred at `centre` on an empty (H, W) canvas, cropping what falls outside."""
    canvas = np.zeros(shape, dtype=bool)
    top, left = centre[0] - patch.shape[0] // 2, centre[1] - patch.shape[1] // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + patch.shape[0], shape[0]), min(left + patch.shape[1], shape[1])
    canvas[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def foreground_mask(image: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """The body: bool (H, W), grayscale above `threshold`, closed and hole-filled.

    Closing (radius ~2% of the image) and hole filling keep dark structures inside the body, such
    as the ventricles of a brain slice, while the black background around it stays out.
    """
    body = (image.mean(axis=-1) > threshold).astype(np.uint8)
    radius = max(1, round(0.02 * min(body.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    body = cv2.morphologyEx(body, cv2.MORPH_CLOSE, kernel)  # the image border does not erode
    return ndimage.binary_fill_holes(body.astype(bool))


def mean_change(image: np.ndarray, new: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute change inside `mask` (over pixels and channels); 0 for an empty mask."""
    return float(np.abs(new[mask] - image[mask]).mean()) if mask.any() else 0.0


def most_visible(
    draw: Callable[[], tuple[np.ndarray, np.ndarray]], image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Call `draw` until its change is visible (MIN_CHANGE), at most MAX_TRIES times.

    Returns the first visible draw, else the most visible one; a draw that changed nothing (Source
    on a flat region, CutPaste of a look-alike patch) would teach a detector a wrong label.
    """
    best, best_change = None, -1.0
    for _ in range(MAX_TRIES):
        new, mask = draw()
        change = mean_change(image, new, mask)
        if change >= MIN_CHANGE:
            return new, mask
        if change > best_change:
            best, best_change = (new, mask), change
    return best
