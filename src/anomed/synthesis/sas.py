"""Structure-preserving anomaly synthesis (SAS, from PPAD, MICCAI 2024).

A random irregular blob is placed in a region of the image and the intensities inside it are
gamma-corrected, most strongly at the blob's centre and not at all on its edge:

    γ = 1 + w · d / max(d),   out = I^γ   (I in [0, 1]; 255 · (I / 255)^γ for 8-bit data)

with w drawn from {−0.999, −0.99, 2, 3} and d the distance to the nearest pixel outside the blob
(less one pixel, so that d = 0 on the blob's inner boundary). Nothing is pasted from another image
and no pixel moves, so the anatomy keeps its shape: ribs stay ribs, only their density changes.
w > 0 darkens (γ > 1), w < 0 brightens (γ < 1) towards the blob's centre.

The blob: 10 random points in a box of random width and height, their filled convex hull, and for
each hull edge a cubic Bézier curve between its end points whose two control points are the edge's
midpoint plus N(0, 8²) pixel noise; the region between each curve and its edge is filled, and the
blob is the hull XOR the union of those fills (outward bulges are added, inward ones carved out),
dilated once with a 5 × 5 square.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from scipy import ndimage

from anomed.synthesis.compose import SYNTHESIS

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), end exclusive like a slice
WEIGHTS = (-0.999, -0.99, 2.0, 3.0)
_CURVE_STEPS = 32  # points per Bézier curve


def region_box(region: np.ndarray | Sequence[int] | None, shape: tuple[int, int]) -> Box:
    """The bounding box (y0, y1, x0, x1) of a bool (H, W) region, or a box checked against
    `shape`; None means the whole image."""
    height, width = shape
    if region is None:
        return 0, height, 0, width
    if isinstance(region, np.ndarray) and region.dtype == bool:
        if region.shape != (height, width):
            raise ValueError(f"region mask {region.shape} does not match the image {shape}")
        rows, cols = np.nonzero(region)
        if rows.size == 0:
            raise ValueError("region mask is empty")
        return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    y0, y1, x0, x1 = (int(v) for v in region)
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ValueError(f"region box {(y0, y1, x0, x1)} is empty or outside the image {shape}")
    return y0, y1, x0, x1


def bezier(
    p0: np.ndarray, c1: np.ndarray, c2: np.ndarray, p1: np.ndarray, steps: int = _CURVE_STEPS
) -> np.ndarray:
    """Points (steps, 2) of the cubic Bézier curve from `p0` to `p1` with controls `c1`, `c2`."""
    t = np.linspace(0.0, 1.0, steps)[:, None]  # (T, 1)
    s = 1.0 - t
    return s**3 * p0 + 3 * s**2 * t * c1 + 3 * s * t**2 * c2 + t**3 * p1


def blob_shape(
    height: float,
    width: float,
    rng: np.random.Generator,
    n_points: int = 10,
    control_sigma: float = 8.0,
    dilation: int = 5,
    crop: bool = True,
) -> np.ndarray:
    """An SAS blob cropped to its bounding box: bool (h, w), never empty.

    The random points lie in a `height` × `width` box; Bézier bulges (and the dilation) may
    reach a little beyond it. `crop=False` gives PPAD's code's mask instead: the blob where it
    lies in the box, on a square of the box's larger side (what reaches beyond it is lost)."""
    margin = int(np.ceil(4 * control_sigma)) + dilation
    canvas_shape = (int(np.ceil(height)) + 2 * margin, int(np.ceil(width)) + 2 * margin)
    points = rng.uniform((0.0, 0.0), (width, height), size=(n_points, 2)) + margin  # (N, 2) x, y
    hull = cv2.convexHull(points.astype(np.float32))[:, 0, :].astype(float)  # (V, 2)
    hull_mask = np.zeros(canvas_shape, np.uint8)
    cv2.fillPoly(hull_mask, [np.round(hull).astype(np.int32)], 1)
    bulges = np.zeros(canvas_shape, np.uint8)
    for p0, p1 in zip(hull, np.roll(hull, -1, axis=0), strict=True):
        mid = (p0 + p1) / 2
        c1, c2 = mid + rng.normal(0.0, control_sigma, size=(2, 2))
        curve = bezier(p0, c1, c2, p1)
        cv2.fillPoly(bulges, [np.round(curve).astype(np.int32)], 1)
    blob = (hull_mask ^ bulges).astype(np.uint8)
    blob = cv2.dilate(blob, np.ones((dilation, dilation), np.uint8)) > 0
    if not blob.any():  # all points on one pixel: keep that pixel
        blob[tuple(np.round(points[0, ::-1]).astype(int))] = True
    if not crop:
        side = max(canvas_shape) - 2 * margin
        return blob[margin : margin + side, margin : margin + side]
    rows, cols = np.nonzero(blob)
    return blob[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def place_blob(blob: np.ndarray, centre: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Paste `blob` centred on `centre` (y, x) into an empty (H, W) mask, shifted (not cropped)
    to stay inside the image; a blob larger than the image keeps its central part."""
    out = np.zeros(shape, dtype=bool)
    placed = []
    for axis, (n, c) in enumerate(zip(shape, centre, strict=True)):
        size = blob.shape[axis]
        crop = max(size - n, 0)
        start = int(np.clip(c - (size - crop) // 2, 0, n - (size - crop)))
        placed.append((start, start + size - crop, crop // 2))
    (y0, y1, cy), (x0, x1, cx) = placed
    out[y0:y1, x0:x1] = blob[cy : cy + y1 - y0, cx : cx + x1 - x0]
    return out


def gamma_map(mask: np.ndarray, weight: float, edges: str = "anomed") -> np.ndarray:
    """γ = 1 + w · d / max(d): float32 (H, W), exactly 1 outside `mask` and on its inner boundary.

    edges "anomed": d is the Euclidean distance to the nearest pixel outside the mask (the image
    border counts as outside) minus one pixel, so 0 on every mask pixel with a 4-neighbour
    outside. "reference": PPAD's code - d is the distance to the nearest mask-free pixel *of the
    image* (beyond the border counts as inside, so γ is deepest where the blob meets the
    border), not shifted, and set to γ = 1 on the inner boundary."""
    if edges == "reference":
        d = ndimage.distance_transform_edt(mask)
        inner = mask & ~ndimage.binary_erosion(mask, border_value=1)
    else:
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        d, inner = np.maximum(edt - 1.0, 0.0), np.zeros_like(mask)
    peak = d.max()
    if peak <= 0:
        return np.ones(mask.shape, np.float32)
    gamma = 1.0 + weight * d / peak
    gamma[inner] = 1.0
    return gamma.astype(np.float32)


def place_on_canvas(
    blob: np.ndarray, centre: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """PPAD's code's placement: the blob sits in the top-left corner of a square canvas of its
    larger side (`blob_shape(crop=False)` gives that canvas itself); the canvas is centred on
    `centre` and shifted back inside the image as the
    code does it (ending one pixel short of the far border). Blobs thus sit up/left of the
    centre by half the difference of their sides."""
    side = max(blob.shape)
    canvas = np.zeros((side, side), bool)
    canvas[: blob.shape[0], : blob.shape[1]] = blob
    out = np.zeros(shape, dtype=bool)
    spans = []
    for n, c in zip(shape, centre, strict=True):
        lo, hi = c - side // 2, c + side - side // 2
        if lo < 0:
            lo, hi = 0, hi - lo
        if hi > n:
            lo, hi = lo + (n - 1 - hi), n - 1
        spans.append((lo, hi))
    (y0, y1), (x0, x1) = spans
    if y0 < 0 or x0 < 0:  # a canvas larger than the image: keep what fits
        canvas = canvas[-y0 if y0 < 0 else 0 :, -x0 if x0 < 0 else 0 :]
        y0, x0 = max(y0, 0), max(x0, 0)
    out[y0:y1, x0:x1] = canvas[: y1 - y0, : x1 - x0]
    return out


def apply_gamma(image: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """out = I^γ per pixel for float images in [0, 1], 255 · (I / 255)^γ for 8-bit ones, clipped.

    An (H, W, C) image is turned gray (its first channel when all are equal, else the channel
    mean) and returned with C identical channels; where γ = 1 a gray pixel keeps its exact value."""
    image = np.asarray(image)
    gray = image  # (H, W)
    if image.ndim == 3:
        same = all(np.array_equal(image[..., 0], image[..., c]) for c in range(image.shape[-1]))
        gray = image[..., 0] if same else image.mean(axis=-1)
    scale = 255.0 if np.issubdtype(image.dtype, np.integer) else 1.0
    unit = np.clip(gray.astype(np.float64) / scale, 0.0, 1.0)
    out = np.clip(unit**gamma, 0.0, 1.0) * scale  # (H, W)
    out = np.round(out).astype(image.dtype) if scale == 255.0 else out.astype(np.float32)
    if image.ndim == 3:
        out = np.repeat(out[..., None], image.shape[-1], axis=-1)
    return out


@dataclass(frozen=True)
class SAS:
    """Structure-preserving anomaly synthesis: a gamma change inside a random irregular blob.

    Follows the synthesis task protocol of `anomed.synthesis` with an extra `region` (a bool
    (H, W) mask or a (y0, y1, x0, x1) box): the blob's centre is uniform in the region's bounding
    box; the blob itself may extend beyond the region. Without a region the foreground (when
    given and non-empty) is used, else the whole image. Returns (image, blob mask); the mask's
    one-pixel inner boundary is part of the blob but keeps its intensity (γ = 1 there).
    """

    weights: tuple[float, ...] = WEIGHTS  # w, drawn uniformly
    size_range: tuple[float, float] = (0.2, 0.8)  # blob width and height, fraction of image W
    n_points: int = 10  # random points whose convex hull starts the blob
    control_sigma: float = 8.0  # Bézier control point noise, pixels
    dilation: int = 5  # square dilation kernel side, pixels
    # "centred": the blob centred on its centre; "canvas": PPAD's code (`place_on_canvas`)
    placement: Literal["centred", "canvas"] = "centred"
    edges: Literal["anomed", "reference"] = "anomed"  # see `gamma_map`

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        donors: Sequence[np.ndarray] = (),
        foreground: np.ndarray | None = None,
        region: np.ndarray | Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (image with the gamma change, bool (H, W) blob mask); `donors` are not used."""
        shape = image.shape[:2]
        if region is None and foreground is not None and foreground.any():
            region = foreground
        mask, weight = self.sample(shape, rng, region)
        return apply_gamma(image, gamma_map(mask, weight, self.edges)), mask

    def sample(
        self,
        shape: tuple[int, int],
        rng: np.random.Generator,
        region: np.ndarray | Sequence[int] | None = None,
    ) -> tuple[np.ndarray, float]:
        """Draw (blob mask bool (H, W), weight w): steps 1-4 of SAS, without touching an image."""
        height, width = shape
        y0, y1, x0, x1 = region_box(region, shape)
        weight = float(self.weights[rng.integers(len(self.weights))])
        canvas = self.placement == "canvas"
        # PPAD's code: randint(top, bottom) with bottom the region's last row: never that row
        last = 1 if canvas else 0
        centre = (
            int(rng.integers(y0, max(y1 - last, y0 + 1))),
            int(rng.integers(x0, max(x1 - last, x0 + 1))),
        )
        if canvas:  # PPAD's code: whole pixels, randint(round(0.2 W), round(0.8 W))
            lo, hi = (round(f * width) for f in self.size_range)
            blob_w, blob_h = rng.integers(lo, max(hi, lo + 1), size=2).astype(float)
        else:
            blob_w, blob_h = rng.uniform(*self.size_range, size=2) * width
        blob = blob_shape(
            min(blob_h, height),
            blob_w,
            rng,
            self.n_points,
            self.control_sigma,
            self.dilation,
            crop=not canvas,
        )
        place = place_on_canvas if canvas else place_blob
        return place(blob, centre, shape), weight


SYNTHESIS.register("sas")(SAS)
