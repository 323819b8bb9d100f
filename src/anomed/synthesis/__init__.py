"""Anomaly synthesis: each task takes a normal image and returns (anomalous image, mask)."""

from anomed.synthesis.compose import SYNTHESIS, AnomalySynthesizer, SynthesisTask
from anomed.synthesis.cutpaste import CutPaste, poisson_blend
from anomed.synthesis.intensity import GaussIntensityChange
from anomed.synthesis.perlin import blob_mask, foreground_mask, perlin_mask, perlin_noise
from anomed.synthesis.sas import SAS
from anomed.synthesis.source import Source, source_warp

__all__ = [
    "SAS",
    "SYNTHESIS",
    "AnomalySynthesizer",
    "CutPaste",
    "GaussIntensityChange",
    "Source",
    "SynthesisTask",
    "blob_mask",
    "foreground_mask",
    "perlin_mask",
    "perlin_noise",
    "poisson_blend",
    "source_warp",
]
