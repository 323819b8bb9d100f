"""Deterministic views of a support image and its mask (the shots' augmentation of MVFA/MadCLIP).

Each view is a fixed geometric or photometric change; the mask follows every geometric change
(nearest neighbour) and ignores photometric ones. Borders are filled by reflection.
"""

from __future__ import annotations

import cv2
import numpy as np

View = tuple[np.ndarray, np.ndarray]  # (image (H, W, 3) float32, mask (H, W) bool)

MVFA_ROTATIONS = (-22.5, -11.25, 11.25, 22.5)  # degrees: ±π/8, ±π/16
MVFA_SHIFTS = ((0.1, 0.1), (0.1, -0.1), (-0.1, 0.1), (-0.1, -0.1))  # fractions of (W, H)
MADCLIP_ZOOMS = (1.1, 1.15, 1.2, 1.3)
MADCLIP_PHOTOMETRIC = (1.2, 0.2)  # one view: contrast x1.2 around the mean, brightness +0.2


def _warp(image: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> View:
    h, w = mask.shape
    out = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    out_mask = cv2.warpAffine(
        mask.astype(np.uint8),
        matrix,
        (w, h),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32), out_mask > 0


def rotate(image: np.ndarray, mask: np.ndarray, degrees: float) -> View:
    h, w = mask.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return _warp(image, mask, matrix)


def translate(image: np.ndarray, mask: np.ndarray, fx: float, fy: float) -> View:
    h, w = mask.shape
    matrix = np.float32([[1, 0, round(fx * w)], [0, 1, round(fy * h)]])
    return _warp(image, mask, matrix)


def zoom(image: np.ndarray, mask: np.ndarray, factor: float) -> View:
    h, w = mask.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0.0, factor)
    return _warp(image, mask, matrix)


def mvfa_views(image: np.ndarray, mask: np.ndarray) -> list[View]:
    """The 11 views: original, 4 rotations, 4 diagonal 10 % shifts, horizontal and vertical flip."""
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    views = [(image, mask)]
    views += [rotate(image, mask, d) for d in MVFA_ROTATIONS]
    views += [translate(image, mask, fx, fy) for fx, fy in MVFA_SHIFTS]
    views.append((image[:, ::-1].copy(), mask[:, ::-1].copy()))
    views.append((image[::-1].copy(), mask[::-1].copy()))
    return views


def madclip_views(image: np.ndarray, mask: np.ndarray) -> list[View]:
    """The 16 views: MVFA's 11, centre zooms 1.1/1.15/1.2/1.3, and one brightness/contrast view
    (contrast x1.2 about the image mean, then +0.2 brightness, clipped; mask unchanged)."""
    views = mvfa_views(image, mask)
    views += [zoom(views[0][0], views[0][1], f) for f in MADCLIP_ZOOMS]
    contrast, brightness = MADCLIP_PHOTOMETRIC
    base = views[0][0]
    photometric = np.clip((base - base.mean()) * contrast + base.mean() + brightness, 0, 1)
    views.append((photometric.astype(np.float32), views[0][1].copy()))
    return views
