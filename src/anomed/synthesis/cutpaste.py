"""CutPaste: a rotated, rescaled piece of another normal image put into a Perlin blob."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anomed.errors import AnomedError
from anomed.synthesis.perlin import blob_mask, foreground_mask, most_visible

BLENDS = ("poisson", "paste")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def paste(image: np.ndarray, content: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`content` inside `mask`, `image` elsewhere: float32 (H, W, 3)."""
    return np.where(mask[..., None], content, image).astype(np.float32)


def poisson_blend(
    image: np.ndarray, content: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Seamlessly clone `content` into `image` inside `mask` (cv2.seamlessClone, NORMAL_CLONE).

    OpenCV needs uint8 images and a mask clear of the image border, so the mask loses its outer
    1-pixel frame. `content` is aligned with `image`, so the clone centre is the centre of the
    mask's bounding box. The result is composited with the mask: pixels outside the returned mask
    are exactly `image`. Falls back to a plain paste where OpenCV cannot blend.
    """
    inner = mask.copy()
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    if not inner.any():
        return paste(image, content, mask), mask
    ys, xs = np.nonzero(inner)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    centre = (int(xs.min() + width // 2), int(ys.min() + height // 2))  # (x, y) as OpenCV wants
    try:
        # seamlessClone writes into its mask argument, so it gets a fresh array.
        cloned = cv2.seamlessClone(
            _to_uint8(content),
            _to_uint8(image),
            inner.astype(np.uint8) * 255,
            centre,
            cv2.NORMAL_CLONE,
        )
    except cv2.error:
        return paste(image, content, mask), mask
    return paste(image, cloned.astype(np.float32) / 255.0, inner), inner


@dataclass(frozen=True)
class CutPaste:
    """Take a piece of a donor (another normal image of the support set, or the image itself),
    rotate and rescale it, and put it into a Perlin blob of the image.

    blend="paste" copies the pixels (what the MediCLIP reference code does); blend="poisson" blends
    them with cv2.seamlessClone so that no sharp seam gives the anomaly away.
    """

    blend: str = "poisson"  # "poisson" or "paste"
    scale_range: tuple[float, float] = (0.5, 1.5)  # rescale of the donor content, uniform
    rotation: tuple[float, float] = (-90.0, 90.0)  # rotation of the donor content, degrees
    size_range: tuple[float, float] = (0.1, 0.5)  # blob diameters, fraction of the image side

    def __post_init__(self) -> None:
        if self.blend not in BLENDS:
            raise AnomedError(
                f"synthesis task 'cutpaste': unknown blend {self.blend!r}. "
                f"Fix: use one of {', '.join(BLENDS)}."
            )

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        donors: Sequence[np.ndarray] = (),
        foreground: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (image with the pasted piece, its mask); donors default to the image itself."""

        def draw() -> tuple[np.ndarray, np.ndarray]:
            mask = blob_mask(image.shape[:2], rng, self.size_range, foreground)
            donor = donors[rng.integers(len(donors))] if len(donors) else image
            content = self.transform(donor, mask, rng)
            if self.blend == "poisson":
                return poisson_blend(image, content, mask)
            return paste(image, content, mask), mask

        return most_visible(draw, image)

    def transform(
        self, donor: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Rotate and rescale the donor about a random point of its body and move that point to
        the centre of `mask`: float32 (H, W, 3) aligned with the target image.
        """
        donor = np.ascontiguousarray(donor, dtype=np.float32)
        body = np.argwhere(foreground_mask(donor))
        if len(body) == 0:
            body = np.argwhere(np.ones(donor.shape[:2], dtype=bool))
        sy, sx = body[rng.integers(len(body))]
        ty, tx = np.argwhere(mask).mean(axis=0)
        matrix = cv2.getRotationMatrix2D(
            (float(sx), float(sy)), rng.uniform(*self.rotation), rng.uniform(*self.scale_range)
        )
        matrix[:, 2] += (tx - sx, ty - sy)
        height, width = mask.shape
        return cv2.warpAffine(
            donor,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
