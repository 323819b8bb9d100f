"""Deterministic views of a support image and its mask (the shots' augmentation of MVFA/MadCLIP).

Each view is one fixed geometric or photometric change, so a shot always yields the same views.
Images are resampled bilinearly, masks with nearest neighbour through the same matrix, so the mask
stays on the image; borders are filled by reflection (`cv2.BORDER_REFLECT_101`). Photometric
changes leave the mask as it is. Every function is pure: inputs are never modified.
"""

from __future__ import annotations

import cv2
import numpy as np

View = tuple[np.ndarray, np.ndarray]  # (image (H, W, C) float32 in [0, 1], mask (H, W) bool)

MVFA_ROTATIONS = (-22.5, -11.25, 11.25, 22.5)  # degrees: -π/8, -π/16, +π/16, +π/8
MVFA_SHIFTS = ((1, 1), (-1, 1), (-1, -1), (1, -1))  # diagonal directions (x, y), times `shift`
MADCLIP_ZOOMS = (1.1, 1.15, 1.2, 1.3)  # centre zoom-in factors
MADCLIP_BRIGHTNESS = 1.2  # brightness factor of the photometric view (ColorJitter's 1 + 0.2)
MADCLIP_CONTRAST = 0.8  # contrast factor of the photometric view (ColorJitter's 1 - 0.2)


def _check(image: np.ndarray, mask: np.ndarray) -> View:
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim not in (2, 3) or image.shape[:2] != mask.shape:
        raise ValueError(
            f"image {image.shape} and mask {mask.shape} must share (H, W); image (H, W, C)"
        )
    return image, mask


def affine(image: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> View:
    """Warp image (bilinear) and mask (nearest) by one 2x3 matrix that maps input (x, y) to
    output (x, y), as `cv2.warpAffine` reads it; same size out, borders reflect."""
    image, mask = _check(image, mask)
    h, w = mask.shape
    size, border = (w, h), cv2.BORDER_REFLECT_101
    matrix = np.asarray(matrix, dtype=np.float64)
    out = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=border)
    out_mask = cv2.warpAffine(
        mask.astype(np.uint8), matrix, size, flags=cv2.INTER_NEAREST, borderMode=border
    )
    out = out.reshape(image.shape)  # cv2 drops a trailing channel axis of size 1
    return np.clip(out, 0.0, 1.0).astype(np.float32), out_mask > 0


def _centre(mask: np.ndarray) -> tuple[float, float]:
    h, w = mask.shape
    return (w - 1) / 2, (h - 1) / 2  # (x, y) of the pixel-grid centre


def rotate(image: np.ndarray, mask: np.ndarray, degrees: float) -> View:
    """Rotate about the image centre by `degrees` (counter-clockwise as displayed)."""
    matrix = cv2.getRotationMatrix2D(_centre(np.asarray(mask)), degrees, 1.0)
    return affine(image, mask, matrix)


def translate(image: np.ndarray, mask: np.ndarray, fx: float, fy: float) -> View:
    """Shift the content right by round(fx * W) and down by round(fy * H) whole pixels."""
    h, w = np.asarray(mask).shape
    matrix = np.array([[1.0, 0.0, round(fx * w)], [0.0, 1.0, round(fy * h)]])
    return affine(image, mask, matrix)


def zoom(image: np.ndarray, mask: np.ndarray, factor: float) -> View:
    """Magnify about the image centre by `factor` (> 1 zooms in), keeping the size."""
    matrix = cv2.getRotationMatrix2D(_centre(np.asarray(mask)), 0.0, factor)
    return affine(image, mask, matrix)


def hflip(image: np.ndarray, mask: np.ndarray) -> View:
    """Mirror left-right (exact, no resampling)."""
    image, mask = _check(image, mask)
    return image[:, ::-1].copy(), mask[:, ::-1].copy()


def vflip(image: np.ndarray, mask: np.ndarray) -> View:
    """Mirror top-bottom (exact, no resampling)."""
    image, mask = _check(image, mask)
    return image[::-1].copy(), mask[::-1].copy()


def jitter(image: np.ndarray, mask: np.ndarray, brightness: float, contrast: float) -> View:
    """torchvision ColorJitter's maths with fixed factors, brightness first: x <- clip(b * x),
    then x <- clip(mean + c * (x - mean)) about the image mean. The mask is unchanged."""
    image, mask = _check(image, mask)
    out = np.clip(image * brightness, 0.0, 1.0)
    mean = out.mean()
    out = np.clip(mean + contrast * (out - mean), 0.0, 1.0)
    return out.astype(np.float32), mask.copy()


def column_jitter(image: np.ndarray, mask: np.ndarray, brightness: float, contrast: float) -> View:
    """The MadCLIP reference's colour jitter: x <- b x, then x <- m + c (x - m) and one clip to
    [0, 1] at the end, where m is its mean over the channels and rows of each column (it takes
    the mean over dims 1 and 2 of a (B, C, H, W) batch). The mask is unchanged."""
    image, mask = _check(image, mask)
    out = image * brightness
    mean = out.mean(axis=(0, 2), keepdims=True) if out.ndim == 3 else out.mean(0, keepdims=True)
    out = np.clip(mean + contrast * (out - mean), 0.0, 1.0)
    return out.astype(np.float32), mask.copy()


def mvfa_views(image: np.ndarray, mask: np.ndarray, shift: float = 0.1) -> list[View]:
    """The 11 views of MVFA, in this order: the original; rotations by -π/8, -π/16, +π/16, +π/8;
    diagonal shifts by `shift` of the width and height, (+,+), (-,+), (-,-), (+,-) in (x, y);
    horizontal flip; vertical flip.

    The reference shifts by 0.1 in `affine_grid`'s [-1, 1] coordinates, i.e. 5 % of the side;
    `shift=0.05` reproduces that, the default follows the paper's "10 %"."""
    image, mask = _check(image, mask)
    views = [(image.copy(), mask.copy())]
    views += [rotate(image, mask, d) for d in MVFA_ROTATIONS]
    views += [translate(image, mask, sx * shift, sy * shift) for sx, sy in MVFA_SHIFTS]
    views += [hflip(image, mask), vflip(image, mask)]
    return views


def madclip_views(
    image: np.ndarray,
    mask: np.ndarray,
    shift: float = 0.1,
    brightness: float = MADCLIP_BRIGHTNESS,
    contrast: float = MADCLIP_CONTRAST,
    jitter_kind: str = "fixed",
) -> list[View]:
    """The 16 views of MadCLIP: MVFA's 11 (`mvfa_views`), centre zooms by 1.1, 1.15, 1.2 and
    1.3, and one photometric view (mask unchanged).

    jitter_kind "fixed": brightness x1.2 then contrast x0.8 about the image mean (`jitter`), the
    edge of the paper's "brightness/contrast ±0.2"; "reference": the reference's `column_jitter`
    with the given factors (the reference draws them once per run, uniform in [0.8, 1.2])."""
    image, mask = _check(image, mask)
    views = mvfa_views(image, mask, shift)
    views += [zoom(image, mask, f) for f in MADCLIP_ZOOMS]
    make = column_jitter if jitter_kind == "reference" else jitter
    views.append(make(image, mask, brightness, contrast))
    return views
