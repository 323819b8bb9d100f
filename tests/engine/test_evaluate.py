"""engine.evaluate: pixel metrics from float32 maps (float16 would tie close scores)."""

from __future__ import annotations

import numpy as np
import torch

from anomed.engine.evaluate import run_batches
from anomed.methods.base import AnomalyOutput


class _FixedMaps(torch.nn.Module):
    """Returns the map each image carries: anomalous pixels 1e-4 above normal ones near 1.0,
    a gap float16 (spacing 2^-10 near 1) cannot hold."""

    def forward(self, images: torch.Tensor) -> AnomalyOutput:
        maps = images[:, 0]  # (B, H, W)
        return AnomalyOutput(maps, maps.flatten(1).amax(1))

    def finalize_test(self, maps, scores, parts):
        return maps, scores


def test_pixel_metrics_come_from_float32_maps():
    masks = torch.zeros(2, 8, 8)
    masks[1, 2:5, 2:5] = 1
    images = (1.0 + 1e-4 * masks)[:, None].repeat(1, 3, 1, 1)  # (B, 3, H, W)
    batch = {"image": images, "label": torch.tensor([0, 1]), "mask": masks}
    batch["has_mask"] = torch.tensor([True, True])
    result = run_batches(_FixedMaps(), [batch], torch.device("cpu"), amp=False)
    assert result.maps.dtype == np.float32
    assert result.metrics["pixel_auroc"] == 1.0  # float16 maps: 0.5 (all pixels tied)
