"""Accuracy gates of an INT8 export: the graph against PyTorch fp32 on the run's test set.

An INT8 graph never reproduces fp32 to 1e-3, so it is judged on what a user relies on instead:

- `rank_corr`  Spearman rank correlation of the image scores (the order of the worklist);
- `map_cosine` cosine of the anomaly maps after subtracting the fp32 maps' mean (a centred cosine
               over every test pixel: a constant offset cannot make two different maps look
               alike, as it would in a plain cosine of maps that all sit near, say, 0.5);
- `auroc_drop` how many points image AUROC and pixel AUROC fell (the larger of the two; needs
               normal and abnormal test images, and masks for the pixel one).

`Gates` holds the thresholds (the defaults are the issue's: 0.99, 0.99, 1 point); `GateCheck` the
measured values, which gate failed, and one line saying so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from anomed.errors import AnomedError
from anomed.metrics import image_auroc, pixel_metrics


@dataclass(frozen=True)
class Gates:
    """Minimum agreement an INT8 export must show with PyTorch fp32 to be written."""

    rank_corr: float = 0.99  # Spearman of image scores, at least
    map_cosine: float = 0.99  # centred cosine of anomaly maps, at least
    auroc_drop: float = 1.0  # AUROC points (image and pixel) lost, at most

    def __post_init__(self) -> None:
        for name in ("rank_corr", "map_cosine"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -1.0 <= value <= 1.0):
                flag = "--gate-" + name.replace("_", "-")
                raise AnomedError(f"{flag} {value}: must be between -1 and 1")
        if not (math.isfinite(self.auroc_drop) and 0.0 <= self.auroc_drop <= 100.0):
            raise AnomedError(
                f"--gate-auroc-drop {self.auroc_drop}: must be between 0 and 100 (AUROC points)"
            )


@dataclass
class GateCheck:
    """The quantized graph against PyTorch fp32 on the same images."""

    runtime: str  # e.g. "onnxruntime CPU, int8"
    images: str  # where the images came from
    n_images: int
    rank_corr: float
    map_cosine: float
    image_auroc_fp32: float | None  # None: one class only among the images
    image_auroc: float | None
    pixel_auroc_fp32: float | None  # None: no masks with both classes
    pixel_auroc: float | None
    max_map_diff: float
    max_score_diff: float
    decisions_equal: int | None  # images whose decision agrees (None: no threshold)
    gates: Gates
    decisions_changed: list[str] | None = None  # the images whose decision differs

    @property
    def auroc_drop(self) -> float | None:
        """The larger AUROC fall in points (image, pixel); None when neither can be computed."""
        drops = [
            100.0 * (ref - got)
            for ref, got in (
                (self.image_auroc_fp32, self.image_auroc),
                (self.pixel_auroc_fp32, self.pixel_auroc),
            )
            if ref is not None and got is not None
        ]
        return max(drops) if drops else None

    @property
    def failed(self) -> list[str]:
        """The gates this graph missed, as their option names (a NaN misses every gate)."""
        g, out = self.gates, []
        if not (self.rank_corr >= g.rank_corr):  # NaN fails
            out.append(f"--gate-rank-corr {g.rank_corr:g} (measured {self.rank_corr:.4f})")
        if not (self.map_cosine >= g.map_cosine):
            out.append(f"--gate-map-cosine {g.map_cosine:g} (measured {self.map_cosine:.4f})")
        drop = self.auroc_drop
        if drop is not None and not (drop <= g.auroc_drop):
            out.append(f"--gate-auroc-drop {g.auroc_drop:g} (measured {drop:.2f} points)")
        return out

    @property
    def passed(self) -> bool:
        return not self.failed

    def line(self) -> str:
        def pts(ref: float | None, got: float | None) -> str:
            return "n/a" if ref is None or got is None else f"{100 * ref:.1f} -> {100 * got:.1f}"

        agree = (
            f", {self.decisions_equal}/{self.n_images} decisions equal"
            if self.decisions_equal is not None
            else ""
        )
        verdict = "ok" if self.passed else "FAILED " + "; ".join(self.failed)
        return (
            f"self-check on {self.images} ({self.runtime} vs PyTorch fp32): rank corr "
            f"{self.rank_corr:.4f}, map cosine {self.map_cosine:.4f}, image AUROC "
            f"{pts(self.image_auroc_fp32, self.image_auroc)}, pixel AUROC "
            f"{pts(self.pixel_auroc_fp32, self.pixel_auroc)}{agree} -> {verdict}"
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(auroc_drop=self.auroc_drop, passed=self.passed, failed=self.failed)
        return out


def rank_correlation(ref: np.ndarray, got: np.ndarray) -> float:
    """Spearman of two score vectors; 1.0 when both are constant and equal, NaN on NaN."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if not (np.isfinite(ref).all() and np.isfinite(got).all()):
        return float("nan")
    if len(ref) < 2 or np.ptp(ref) == 0 or np.ptp(got) == 0:
        return 1.0 if np.allclose(ref, got) else 0.0
    return float(spearmanr(ref, got).statistic)


def centred_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Cosine of `got - mean(ref)` and `ref - mean(ref)` over every value (NaN on NaN)."""
    ref, got = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    centre = ref.mean()
    a, b = ref - centre, got - centre
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if not np.isfinite(norm):
        return float("nan")
    if norm == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(a @ b / norm)


def _pixel_auroc(masks: np.ndarray | None, maps: np.ndarray) -> float | None:
    return None if masks is None else pixel_metrics(masks, maps)["pixel_auroc"]


def gate_check(
    reference: tuple[np.ndarray, np.ndarray],
    got: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray | None,
    masks: np.ndarray | None,
    threshold: float | None,
    gates: Gates,
    runtime: str,
    images: str,
    names: list[str] | None = None,
) -> GateCheck:
    """Measure `got` (scores (N,), maps (N, S, S)) against the fp32 `reference` of the same N
    images; `labels` (N,) and `masks` (N, S, S) give the AUROCs where they have both classes."""
    (ref_s, ref_m), (s, m) = reference, got
    if s.shape != ref_s.shape or m.shape != ref_m.shape:
        raise AnomedError(
            f"the {runtime} graph returned maps {m.shape} and scores {s.shape}, PyTorch "
            f"{ref_m.shape} and {ref_s.shape}"
        )
    agree, changed = None, None
    if threshold is not None:
        same = (s > threshold) == (ref_s > threshold)
        agree = int(same.sum())
        names = names or [f"image {i}" for i in range(len(s))]
        changed = [name for name, keep in zip(names, same, strict=True) if not keep]
    return GateCheck(
        runtime=runtime,
        images=images,
        n_images=len(s),
        rank_corr=rank_correlation(ref_s, s),
        map_cosine=centred_cosine(ref_m, m),
        image_auroc_fp32=None if labels is None else image_auroc(labels, ref_s),
        image_auroc=None if labels is None else image_auroc(labels, s),
        pixel_auroc_fp32=_pixel_auroc(masks, ref_m),
        pixel_auroc=_pixel_auroc(masks, m),
        max_map_diff=float(np.abs(m - ref_m).max()),
        max_score_diff=float(np.abs(s - ref_s).max()),
        decisions_equal=agree,
        gates=gates,
        decisions_changed=changed,
    )
