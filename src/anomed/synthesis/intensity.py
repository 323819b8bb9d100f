"""Gaussian intensity change: a smooth blotchy brightening or darkening inside a Perlin blob."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from anomed.synthesis.perlin import blob_mask, most_visible


@dataclass(frozen=True)
class GaussIntensityChange:
    """Add γ · texture inside a Perlin blob, clip to [0, 1] (the MediCLIP intensity task).

    The texture is Gaussian noise binarized at 0, smoothed with a Gaussian filter and rescaled to
    [0, 1]; γ is uniform on the union of `gamma_range`. The change fades in over the blob edge and
    is exactly 0 outside the returned mask.
    """

    gamma_range: tuple[tuple[float, float], ...] = ((-0.6, -0.4), (0.4, 0.6))  # union of ranges
    sigma: tuple[float, float] = (0.015, 0.035)  # texture smoothing, fraction of min(H, W)
    edge_sigma: tuple[float, float] = (0.005, 0.02)  # blob edge softening, fraction of min(H, W)
    size_range: tuple[float, float] = (0.15, 0.5)  # blob diameters, fraction of the image side

    def sample_gamma(self, rng: np.random.Generator) -> float:
        """γ uniform on the union of `gamma_range` (each range weighted by its length)."""
        lengths = np.array([high - low for low, high in self.gamma_range], dtype=float)
        low, high = self.gamma_range[rng.choice(len(lengths), p=lengths / lengths.sum())]
        return float(rng.uniform(low, high))

    def texture(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Binarized Gaussian noise, smoothed and rescaled to [0, 1]: float (H, W)."""
        binary = (rng.standard_normal(shape) >= 0.0).astype(float)
        smooth = ndimage.gaussian_filter(binary, rng.uniform(*self.sigma) * min(shape))
        span = smooth.max() - smooth.min()
        return (smooth - smooth.min()) / span if span > 0 else np.full(shape, 0.5)

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        donors: Sequence[np.ndarray] = (),
        foreground: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (image with the intensity change, its mask); `donors` are not used."""
        shape = image.shape[:2]

        def draw() -> tuple[np.ndarray, np.ndarray]:
            mask = blob_mask(shape, rng, self.size_range, foreground)
            edge = ndimage.gaussian_filter(
                mask.astype(float), rng.uniform(*self.edge_sigma) * min(shape)
            )
            change = self.sample_gamma(rng) * self.texture(shape, rng) * edge * mask  # (H, W)
            new = np.clip(image + change[..., None], 0.0, 1.0).astype(np.float32)
            return new, mask

        return most_visible(draw, image)
