"""Source deformation: content swells outward from a centre, like a growing mass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anomed.errors import AnomedError
from anomed.synthesis.perlin import most_visible

SHAPES = ("ellipse", "rectangle")


def source_warp(
    image: np.ndarray,
    centre: tuple[float, float],
    half_axes: tuple[float, float],
    angle: float,
    alpha: float,
    shape: str = "ellipse",
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` inside a rotated ellipse or rectangle; returns (new image, shape mask).

    `centre` is (y, x) and `half_axes` (along y, along x) in pixels before the shape is rotated by
    `angle` radians. With r the distance from the centre c to the shape boundary along the ray
    through pixel l, the pixel takes the value at c + r·(l−c)/‖l−c‖·(‖l−c‖/r)^α, which is
    c + (l−c)·(‖l−c‖/r)^(α−1): the centre and the boundary stay, everything between moves out.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    dy = np.arange(height, dtype=float)[:, None] - centre[0]  # (H, 1)
    dx = np.arange(width, dtype=float)[None, :] - centre[1]  # (1, W)
    u = np.cos(angle) * dx + np.sin(angle) * dy  # (H, W) along the shape's x axis
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    if shape == "ellipse":
        rho = np.hypot(v / half_axes[0], u / half_axes[1])  # ‖l−c‖ / r
    elif shape == "rectangle":
        rho = np.maximum(np.abs(v) / half_axes[0], np.abs(u) / half_axes[1])
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    inside = rho <= 1.0
    factor = np.where(inside, rho ** (alpha - 1.0), 1.0)
    map_x = (centre[1] + dx * factor).astype(np.float32)
    map_y = (centre[0] + dy * factor).astype(np.float32)
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return np.where(inside[..., None], warped, image).astype(np.float32), inside


@dataclass(frozen=True)
class Source:
    """Swell the content of a random rotated ellipse or rectangle outward from its centre.

    Only pixels inside the shape (and the foreground, when given) change; the mask is that region.
    """

    alpha_range: tuple[float, float] = (float(np.sqrt(2.0)), 4.0)  # exponent α, uniform
    shape: str = "random"  # "ellipse", "rectangle" or "random" (either, per draw)
    size_range: tuple[float, float] = (0.2, 0.5)  # shape diameters, fraction of min(H, W)

    def __post_init__(self) -> None:
        if self.shape not in (*SHAPES, "random"):
            raise AnomedError(
                f"synthesis task 'source': unknown shape {self.shape!r}. "
                f"Fix: use one of ellipse, rectangle, random."
            )

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        donors: Sequence[np.ndarray] = (),
        foreground: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (deformed image, mask); `donors` are not used."""
        height, width = image.shape[:2]
        usable = foreground is not None and foreground.any()
        centres = np.argwhere(foreground) if usable else None

        def draw() -> tuple[np.ndarray, np.ndarray]:
            if centres is None:
                centre = (rng.integers(height), rng.integers(width))
            else:
                centre = tuple(centres[rng.integers(len(centres))])
            half_axes = rng.uniform(*self.size_range, size=2) * min(height, width) / 2
            kind = SHAPES[rng.integers(2)] if self.shape == "random" else self.shape
            angle, alpha = rng.uniform(0.0, np.pi), rng.uniform(*self.alpha_range)
            warped, mask = source_warp(
                image, (float(centre[0]), float(centre[1])), tuple(half_axes), angle, alpha, kind
            )
            if usable:
                mask &= foreground
            return np.where(mask[..., None], warped, image).astype(np.float32), mask

        return most_visible(draw, image)
