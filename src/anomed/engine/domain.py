"""The domain guard: is this image of the kind this detector was trained on?

A detector applied to the wrong modality or organ still prints confident decisions; the guard
says so instead. It works in four steps, all here:

1. **Features** (`domain_features`, torch, traceable into ONNX). One pass of the *frozen*
   backbone, through its public `encode_image` (so any tower keeping the `VisionOutput` contract
   works), gives six blocks per image: the global image embedding (L2-normalised, (B, D): what
   separates modalities with real CLIP weights); the mean and the standard deviation of the
   patch tokens after an early block ((B, C) each: texture statistics that separate even with a
   random-init backbone); pixel statistics ((B, HIST_BINS + 3): grey histogram, background
   share, mean, spread); a 4 x 4 grey thumbnail (B, 16) (where the anatomy sits); gradient
   statistics (B, 4) (how grainy the image is).
2. **Training domain** (`fit_domain_guard`, at training). The shots (normal and abnormal), the
   validation images and three views of each (mirror, darker, brighter) are featurised. Each
   feature is standardised by its training mean and spread, the spread floored at a quarter of
   its block's mean spread and at 10 % of its mean value (a few shots underestimate how much
   images vary), and each block is scaled by 1/sqrt(its width). These rows are the bank.
3. **Distance** (`DomainGuard.forward`, the one shared function): per block, the Euclidean
   distance to the nearest bank row over that block's typical in-domain distance; the largest
   of these ratios (an image far off in any one respect is far). Every runtime computes it the
   same way: torch calls the module, the ONNX graph holds it (output `domain_distance`), so
   runtimes built on the exported graph get it for free.
4. **Calibration**: leave-one-out over the training items (an item's views left out with it)
   gives the distances of in-domain images that were not in the bank. A block's typical
   distance is their `QUANTILE` quantile, at least `block_floor(items)`; the threshold is
   `MARGIN` x the `QUANTILE` quantile of the left-out items' own distances. Above it an image
   is out of domain.

Volumes are judged by their slices: the median distance of their non-empty slices.
A checkpoint saved before the guard has none: `in_domain` is None, with `NO_GUARD_NOTE`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomed.backbone import FrozenCLIP
from anomed.config import Bounds
from anomed.errors import AnomedError

DomainCheck = Literal["warn", "refuse", "off"]
DOMAIN_CHECKS: tuple[str, ...] = ("warn", "refuse", "off")
HIST_BINS = 16
BACKGROUND = 0.05  # grey level below which a pixel counts as background
QUANTILE = 0.95
MARGIN = 1.5
SPREAD_FLOOR = 0.25  # a feature's spread is at least this share of its block's mean spread
RELATIVE_FLOOR = 0.1  # ... and this share of its mean value (few shots underestimate spreads)


def block_floor(n_items: int) -> float:
    """The least typical in-domain distance of a block: 2 / sqrt(items), within [0.5, 1]. A
    95th percentile of leave-one-out distances over a handful of items is little more than
    their maximum, so the fewer the items, the wider the domain is taken to be."""
    return float(np.clip(2.0 / math.sqrt(max(n_items, 1)), 0.5, 1.0))


STATE_PREFIX = "domain_guard."  # its tensors' names inside model.safetensors
OUT_OF_DOMAIN = "outside this detector's training domain"
NO_GUARD_NOTE = (
    "the checkpoint was saved before the domain guard existed: in_domain is unknown. Fix: "
    "retrain to record the training domain."
)


@dataclass
class DomainInfo:
    """The YAML side of a fitted guard (the bank is in model.safetensors, `STATE_PREFIX`)."""

    threshold: Annotated[float, Bounds(0.0, None)]  # above it: outside the training domain
    early_layer: Annotated[int, Bounds(1, None)]  # 1-based block whose tokens are summarised
    blocks: list[int]  # feature widths: embedding, token mean/std, pixels, layout, texture
    n_items: int = 0  # training images (before views)
    n_rows: int = 0  # bank rows (items x views)
    quantile: float = QUANTILE
    margin: float = MARGIN
    loo_median: float = 0.0  # leave-one-out distances of training items, for the record
    loo_max: float = 0.0


def early_layer(depth: int) -> int:
    """The block whose token statistics are used: a quarter of the way up (ViT-L-14: 6)."""
    return max(1, round(depth / 4))


def pixel_statistics(images: Tensor, bins: int = HIST_BINS) -> Tensor:
    """images (B, 3, S, S) in [0, 1] -> (B, bins + 3): grey histogram (shares), background
    share, mean and standard deviation, on every (S // 64)-th pixel (comparisons and strided
    slices only, so it traces into ONNX for any S)."""
    step = max(1, images.shape[-1] // 64)
    grey = images.float().mean(1)[:, ::step, ::step].flatten(1)  # (B, P)
    edges = torch.linspace(0.0, 1.0, bins + 1, device=images.device)
    lower, upper = edges[:-1].clone(), edges[1:].clone()
    upper[-1] = 1.0 + 1e-6  # the last bin holds 1.0
    g = grey.unsqueeze(-1)  # (B, P, 1)
    hist = ((g >= lower) & (g < upper)).float().mean(1)  # (B, bins)
    background = (grey < BACKGROUND).float().mean(1, keepdim=True)  # (B, 1)
    return torch.cat(
        [hist, background, grey.mean(1, keepdim=True), grey.std(1, keepdim=True)], dim=1
    )


def layout_and_texture(images: Tensor) -> tuple[Tensor, Tensor]:
    """images (B, 3, S, S) in [0, 1] -> (layout (B, 16): a 4 x 4 grey thumbnail, texture
    (B, 4): mean horizontal and vertical gradient, share of pixels with a gradient above 0.02
    and above 0.1). Where the anatomy sits and how grainy the image is tell modalities apart
    (an ultrasound's speckle, an MRI's smooth tissue on black) whatever the backbone."""
    grey = images.float().mean(1, keepdim=True)  # (B, 1, S, S)
    cell = grey.shape[-1] // 4
    layout = F.avg_pool2d(grey[..., : 4 * cell, : 4 * cell], cell).flatten(1)  # (B, 16)
    gx = (grey[..., :, 1:] - grey[..., :, :-1]).abs().flatten(1)  # (B, S * (S - 1))
    gy = (grey[..., 1:, :] - grey[..., :-1, :]).abs().flatten(1)
    texture = [gx.mean(1), gy.mean(1), (gx > 0.02).float().mean(1), (gx > 0.1).float().mean(1)]
    return layout, torch.stack(texture, dim=1)


def domain_features(backbone: FrozenCLIP, images: Tensor) -> Tensor:
    """images (B, 3, S, S) in [0, 1] -> raw features (B, F) (blocks: see module doc)."""
    early = early_layer(backbone.depth)
    out = backbone.encode_image(images, sorted({early, backbone.depth}))
    embedding = F.normalize(out.image_embedding.float(), dim=-1)  # (B, D)
    tokens = out.tapped[0][:, 1:].float()  # (B, N, C) early patch tokens
    stats = [tokens.mean(1), tokens.std(1), pixel_statistics(images)]
    return torch.cat([embedding, *stats, *layout_and_texture(images)], dim=1)


def feature_blocks(backbone: FrozenCLIP) -> list[int]:
    """The widths of the feature blocks of `domain_features`, in order."""
    width = backbone.vision_width
    return [backbone.embed_dim, width, width, HIST_BINS + 3, 16, 4]


class DomainGuard(nn.Module):
    """Standardised nearest-neighbour distance to the training domain (the shared function)."""

    def __init__(
        self, center: Tensor, scale: Tensor, bank: Tensor, block_scale: Tensor, info: DomainInfo
    ) -> None:
        super().__init__()
        self.info = info
        self.blocks = list(info.blocks)
        self.register_buffer("center", center.float())  # (F,)
        self.register_buffer("scale", scale.float())  # (F,) 1 / (spread x sqrt(block width))
        self.register_buffer("bank", bank.float())  # (M, F) standardised training rows
        self.register_buffer("block_scale", block_scale.float())  # (K,) typical in-domain distance

    def forward(self, features: Tensor) -> Tensor:
        """raw features (B, F) -> distance to the training domain (B,): per block, the distance
        to the nearest training row over the block's typical in-domain distance; the largest."""
        z = (features.float() - self.center) * self.scale  # (B, F)
        return (block_distances(z, self.bank, self.blocks) / self.block_scale).amax(dim=1)

    @property
    def threshold(self) -> float:
        return self.info.threshold

    def state(self) -> dict[str, Tensor]:
        """Tensors to store in the checkpoint (names prefixed with `STATE_PREFIX`)."""
        keys = ("center", "scale", "bank", "block_scale")
        return {STATE_PREFIX + k: getattr(self, k).detach().cpu().contiguous() for k in keys}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], info: DomainInfo) -> DomainGuard:
        """The guard from `state()`'s tensors and its YAML side."""
        get = {k.removeprefix(STATE_PREFIX): v for k, v in state.items()}
        return cls(get["center"], get["scale"], get["bank"], get["block_scale"], info)


def block_distances(z: Tensor, bank: Tensor, blocks: Sequence[int]) -> Tensor:
    """Standardised rows z (B, F), bank (M, F) -> per block, distance to the nearest bank row
    (B, K) (written with matrix products, so it traces into ONNX)."""
    out, start = [], 0
    for width in blocks:
        q, b = z[:, start : start + width], bank[:, start : start + width]
        sq = (q * q).sum(1, keepdim=True) - 2.0 * q @ b.t() + (b * b).sum(1)  # (B, M)
        out.append(sq.clamp_min(0.0).amin(dim=1).sqrt())
        start += width
    return torch.stack(out, dim=1)


def split_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A checkpoint's tensors -> (the method's, the guard's)."""
    guard = {k: v for k, v in state.items() if k.startswith(STATE_PREFIX)}
    return {k: v for k, v in state.items() if k not in guard}, guard


# ---- fitting -------------------------------------------------------------------------------------


def views(image: np.ndarray) -> list[np.ndarray]:
    """An (S, S, 3) image in [0, 1] and three views of it: mirrored, darker, brighter."""
    return [image, image[:, ::-1].copy(), image**1.25, image**0.8]


@torch.no_grad()
def featurise(backbone: FrozenCLIP, images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """(S, S, 3) float images in [0, 1] -> raw features (N, F) float32."""
    device = backbone.pixel_mean.device
    rows = []
    for start in range(0, len(images), batch):
        chunk = np.stack([np.asarray(im, np.float32) for im in images[start : start + batch]])
        x = torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))).to(device)
        rows.append(domain_features(backbone, x).cpu().numpy())
    return np.concatenate(rows).astype(np.float32)


def standardiser(raw: np.ndarray, blocks: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (M, F) -> (center (F,), scale (F,)) as described in the module doc."""
    center = raw.mean(0)
    spread = raw.std(0)
    scale = np.empty_like(spread)
    start = 0
    for width in blocks:
        part = slice(start, start + width)
        floor = SPREAD_FLOOR * float(spread[part].mean()) + 1e-6
        floor = np.maximum(floor, RELATIVE_FLOOR * np.abs(center[part]))
        scale[part] = 1.0 / (np.maximum(spread[part], floor) * math.sqrt(width))
        start += width
    return center.astype(np.float32), scale.astype(np.float32)


def leave_one_out(bank: Tensor, groups: np.ndarray, blocks: Sequence[int]) -> np.ndarray:
    """Each row's per-block distance to the nearest row of another group (its item's views
    left out with it): (M, K)."""
    same = torch.from_numpy(groups[:, None] == groups[None, :])
    out, start = [], 0
    for width in blocks:
        b = bank[:, start : start + width]
        d2 = torch.cdist(b.double(), b.double()).pow(2).masked_fill(same, math.inf)
        out.append(d2.amin(dim=1).sqrt())
        start += width
    return torch.stack(out, dim=1).numpy()


def fit_domain_guard(
    backbone: FrozenCLIP, images: Sequence[np.ndarray], batch: int = 16
) -> DomainGuard | None:
    """Record the training domain of `images` ((S, S, 3) in [0, 1]: shots and validation
    images); None with fewer than 2 images (no leave-one-out calibration is possible)."""
    if len(images) < 2:
        return None
    expanded = [v for im in images for v in views(np.asarray(im, np.float32))]
    groups = np.repeat(np.arange(len(images)), len(expanded) // len(images))
    raw = featurise(backbone, expanded, batch)
    return guard_from_features(raw, groups, feature_blocks(backbone), backbone.depth)


def guard_from_features(
    raw: np.ndarray, groups: np.ndarray, blocks: Sequence[int], depth: int
) -> DomainGuard:
    """The guard of training rows `raw` (M, F) whose item is `groups` (M,) (see module doc)."""
    center, scale = standardiser(raw, blocks)
    bank = torch.from_numpy((raw - center) * scale)  # (M, F)
    loo = leave_one_out(bank, groups, blocks)  # (M, K)
    floor = block_floor(len(np.unique(groups)))
    block_scale = np.maximum(np.quantile(loo, QUANTILE, axis=0), floor)  # (K,)
    combined = (loo / block_scale).max(1)  # (M,) the guard's own statistic, left out
    info = DomainInfo(
        threshold=MARGIN * float(np.quantile(combined, QUANTILE)),
        early_layer=early_layer(depth),
        blocks=list(blocks),
        n_items=int(len(np.unique(groups))),
        n_rows=len(raw),
        loo_median=float(np.median(combined)),
        loo_max=float(combined.max()),
    )
    t = torch.from_numpy
    return DomainGuard(t(center), t(scale), bank, t(block_scale.astype(np.float32)), info)


# ---- deciding ------------------------------------------------------------------------------------


def in_domain(distance: float | None, threshold: float | None) -> bool | None:
    """True within the threshold, False beyond it or for a non-finite distance; None unknown."""
    if distance is None or threshold is None:
        return None
    return bool(math.isfinite(distance) and distance <= threshold)


def volume_distance(distances: Sequence[float] | np.ndarray | None) -> float | None:
    """A volume's distance: the median over its non-empty slices (so it is out of domain when
    most of its slices are); None when not computed."""
    if distances is None or len(distances) == 0:
        return None
    return float(np.median(np.asarray(distances, np.float64)))


def refuse_message(source: str, distance: float, threshold: float) -> str:
    """The error row of `--domain-check refuse`."""
    return (
        f"{source}: {OUT_OF_DOMAIN} (domain distance {distance:.3g} > {threshold:.3g}); no "
        "decision given. Fix: score it with a detector trained on this kind of image, or pass "
        "--domain-check warn to get a flagged decision anyway."
    )


def count_flags(rows: Sequence[dict]) -> dict[str, int]:
    """How many rows the guard judged in / out of domain, and how many it could not judge."""
    values = [r.get("in_domain") for r in rows if r.get("status", "ok") == "ok"]
    return {
        "in_domain": sum(v is True for v in values),
        "out_of_domain": sum(v is False for v in values),
        "domain_unknown": sum(v is None for v in values),
    }


def check_mode(mode: str) -> DomainCheck:
    """`--domain-check` value, checked."""
    if mode not in DOMAIN_CHECKS:
        raise AnomedError(f"--domain-check {mode}: use warn, refuse or off")
    return mode  # type: ignore[return-value]
