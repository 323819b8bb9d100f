"""Synthetic brain-slice phantoms: the embedded default dataset and the tests' data.

Each image is a procedurally drawn T1-like axial slice: a head with a bright skull ring, a dark
CSF layer, folded cortex over white matter, two ventricles, a bias field and Rician noise.
Abnormal slices come from the same anatomy generator plus one lesion of a kind the training-time
synthesis never makes (a tumour with an oedema halo, a rim-bounded cyst, a mass that displaces the
tissue around it), so detecting them takes generalisation, not recognising one's own anomalies.

Ground truth: a tumour's mask covers its bright core and its dark oedema halo (both are
abnormal tissue); a cyst's covers the cavity and its rim; a mass's covers the lesion body only,
not the normal tissue it pushes aside.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image

from anomed.data.sample import ABNORMAL, NORMAL, DatasetSplits, Sample
from anomed.errors import AnomedError

T = TypeVar("T")
LESION_KINDS = ("tumour", "cyst", "mass")
_MODES = np.arange(2, 6, dtype=np.float32)  # outline wobble harmonics (k = 2..5)
# kind: (outline irregularity, smallest minor/major axis ratio)
_LESION_SHAPE = {"tumour": (0.14, 0.75), "cyst": (0.03, 0.65), "mass": (0.08, 0.85)}
# kind: ranges of `level` and `level2` (see _Lesion); grey matter ~0.44, white ~0.67, skull ~0.86
_LESION_LEVELS = {
    "tumour": (0.82, 0.95, 0.45, 0.6),
    "cyst": (0.8, 0.9, 0.04, 0.12),
    "mass": (0.74, 0.84, 0.0, 0.0),
}


@dataclass
class PhantomConfig:
    """What `write_phantom_dataset` writes."""

    n_train: int = 48  # normal slices in the training (k-shot) pool
    n_test_normal: int = 40
    n_test_abnormal: int = 40  # lesion kinds are cycled through in order
    image_size: int = 256  # square side in pixels; lesion sizes scale with it
    seed: int = 0  # same seed and config -> byte-identical files
    lesion_kinds: tuple[str, ...] = LESION_KINDS


@dataclass(frozen=True)
class _Field:
    """A smooth random field: a sum of random plane waves, evaluable at any coordinates."""

    freqs: np.ndarray  # (K, 2) cycles per coordinate unit
    phases: np.ndarray  # (K,)

    @staticmethod
    def sample(rng: np.random.Generator, k: int, fmin: float, fmax: float) -> _Field:
        mag, ang = rng.uniform(fmin, fmax, k), rng.uniform(0, 2 * np.pi, k)
        freqs = np.stack([mag * np.cos(ang), mag * np.sin(ang)], 1).astype(np.float32)
        return _Field(freqs, rng.uniform(0, 2 * np.pi, k).astype(np.float32))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Values at coordinates (x, y), with zero mean and unit variance, shaped like x."""
        arg = 2 * np.pi * (x[..., None] * self.freqs[:, 0] + y[..., None] * self.freqs[:, 1])
        return np.cos(arg + self.phases).sum(-1) * np.float32(np.sqrt(2 / len(self.phases)))

    def on_grid(self, size: int, affine: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The same values at (x, y) = m @ (u, v) + offset over the pixel grid, much faster:
        a plane wave of an affine map of (u, v) is separable, cos(a + b) = cos a cos b -
        sin a sin b, so the sum over waves is two (H, K) x (K, W) products."""
        m, offset = affine
        freqs = 2 * np.pi * (self.freqs @ m)  # (K, 2) angular frequencies along u and v
        phases = self.phases + 2 * np.pi * (self.freqs @ offset)  # (K,)
        t = _grid(size)[0][0].astype(np.float64)  # (W,) pixel centres, the same along v
        along_u = freqs[:, 0, None] * t + phases[:, None]  # (K, W)
        along_v = freqs[None, :, 1] * t[:, None]  # (H, K)
        # einsum, not matmul: tiny products, and BLAS threads stall on a busy machine
        out = np.einsum("hk,kw->hw", np.cos(along_v), np.cos(along_u))
        out -= np.einsum("hk,kw->hw", np.sin(along_v), np.sin(along_u))
        return (out * np.sqrt(2 / len(self.phases))).astype(np.float32)

    def at(self, x: np.ndarray, y: np.ndarray, affine: tuple | None) -> np.ndarray:
        """`on_grid` when (x, y) is an affine map of the pixel grid, else direct evaluation."""
        return self(x, y) if affine is None else self.on_grid(x.shape[0], affine)


@dataclass(frozen=True)
class _Anatomy:
    """Everything random about one slice except its lesion."""

    size: int
    angle: float  # head rotation, radians
    shift: tuple[float, float]  # head centre in image units
    scale: float
    axes: tuple[float, float]  # head semi-axes (x, y) in head units
    wobble: np.ndarray  # (2, 4) amplitudes and phases of the head outline harmonics
    folds: int  # number of gyri around the cortex
    fold_field: _Field
    white_field: _Field
    texture: _Field
    levels: tuple[float, ...]  # skull, CSF, grey matter, white matter intensities
    ventricles: tuple[float, ...]  # overall size, left and right size factors
    bias: tuple[float, ...]  # gradient along u, gradient along v, smooth amplitude
    bias_field: _Field
    sigma: float  # Rician noise level
    noise: np.ndarray  # (2, H, W) standard normals


@dataclass(frozen=True)
class _Lesion:
    """One lesion's geometry and intensities, in pixels."""

    kind: str
    centre: tuple[float, float]  # (x, y)
    radius: float  # largest extent of the ground-truth mask
    angle: float
    aspect: float  # minor / major axis
    wobble: np.ndarray  # (2, 4) outline harmonics
    inner_wobble: np.ndarray  # (2, 4) tumour core outline harmonics
    inner: float  # tumour: core radius; cyst: rim thickness; mass: pushed radius
    level: float  # tumour core / cyst rim / mass intensity
    level2: float  # tumour: oedema darkening factor; cyst: cavity intensity
    texture: _Field


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in image units (u right, v down), both in (-1, 1)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(2 / size) - 1
    v, u = np.meshgrid(t, t, indexing="ij")
    return u, v


def _ramp(d: np.ndarray, eps: float) -> np.ndarray:
    """Anti-aliased inside weight from a signed distance (negative inside)."""
    return np.clip(0.5 - d / eps, 0, 1)


def _lerp(a: np.ndarray | float, b: np.ndarray | float, w: np.ndarray) -> np.ndarray:
    return a + (b - a) * w


def _harmonics(wobble: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """1 + sum_k a_k cos(k phi + p_k), the relative radius of a wobbly outline."""
    return 1 + (wobble[0] * np.cos(_MODES * phi[..., None] + wobble[1])).sum(-1)


def _sample_wobble(rng: np.random.Generator, total: float) -> np.ndarray:
    amps = rng.uniform(-1, 1, 4) / _MODES
    amps *= total / np.abs(amps).sum()
    return np.stack([amps, rng.uniform(0, 2 * np.pi, 4)]).astype(np.float32)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    """Python floats, which keep float32 arrays float32 in arithmetic (numpy scalars do not)."""
    return tuple(float(v) for v in values)


def _sample_anatomy(rng: np.random.Generator, size: int) -> _Anatomy:
    """Draw head pose and shape, tissue contrast, ventricles, bias and noise."""
    return _Anatomy(
        size=size,
        angle=float(rng.uniform(-0.25, 0.25)),
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
        scale=float(rng.uniform(0.92, 1.02)),
        axes=(float(rng.uniform(0.7, 0.78)), float(rng.uniform(0.82, 0.88))),
        wobble=_sample_wobble(rng, float(rng.uniform(0.01, 0.04))),
        folds=int(rng.integers(16, 25)),
        fold_field=_Field.sample(rng, 4, 0.3, 0.7),
        white_field=_Field.sample(rng, 4, 0.8, 2.0),
        texture=_Field.sample(rng, 8, 1.5, 5.0),
        levels=_floats(rng.uniform([0.8, 0.08, 0.4, 0.62], [0.92, 0.14, 0.48, 0.72])),
        ventricles=_floats(rng.uniform([0.8, 0.9, 0.9], [1.2, 1.1, 1.1])),
        bias=_floats(rng.uniform([-0.08, -0.08, 0.0], [0.08, 0.08, 0.04])),
        bias_field=_Field.sample(rng, 3, 0.2, 0.6),
        sigma=float(rng.uniform(0.008, 0.02)),
        noise=rng.standard_normal((2, size, size), dtype=np.float32),
    )


def _head_affine(anat: _Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """(m, offset) with head coordinates (x, y) = m @ (u, v) + offset: the head is translated,
    rotated and scaled in the image."""
    c, s = np.cos(anat.angle), np.sin(anat.angle)
    m = np.array([[c, s], [-s, c]]) / anat.scale
    return m, -m @ np.array(anat.shift)


def _ellipse(x, y, centre, axes, angle) -> np.ndarray:
    """Approximate signed distance to a rotated ellipse (exact across its minor axis)."""
    dx, dy = x - centre[0], y - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    ex, ey = c * dx + s * dy, c * dy - s * dx
    return (np.hypot(ex / axes[0], ey / axes[1]) - 1) * min(axes)


def _deep_structures(anat: _Anatomy, x, y, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the lateral ventricles (two bent crescents, ")(" shaped, with wide frontal
    horns and a third-ventricle slit between them) and of the deep grey nuclei beside them."""
    size, left, right = anat.ventricles
    dist = _ellipse(x, y, (0, 0.06 * size), (0.01, 0.05 * size), 0.0)  # third ventricle
    nuclei = np.zeros_like(x)
    for side, k in ((-1, left), (1, right)):
        yy = (y - 0.02) / (size * k)  # along the ventricle, size-normalised
        out = side * x / (size * k) - 0.07 - 1.8 * yy**2  # across it, from its bent centreline
        width = 0.045 * (1 - 0.9 * yy)  # frontal horns (y < 0) are the wider ends
        dist = np.minimum(dist, (np.hypot(out / width, yy / 0.27) - 1) * width * size * k)
        deep = _ellipse(x, y, (side * 0.26, 0.02), (0.06, 0.11), side * 0.2)
        nuclei = np.maximum(nuclei, _ramp(deep, 4 * eps))
    return _ramp(dist, eps), nuclei


def _render(anat: _Anatomy, warp: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free slice and its brain mask; `warp` (du, dv) moves what each pixel shows."""
    u, v = _grid(anat.size)
    affine = _head_affine(anat)
    (m00, m01), (m10, m11) = affine[0].astype(np.float32)
    if warp is not None:
        u, v = u - warp[0], v - warp[1]
    x = m00 * u + m01 * v + np.float32(affine[1][0])
    y = m10 * u + m11 * v + np.float32(affine[1][1])
    affine = affine if warp is None else None  # fields on the plain grid take the fast path
    eps = 2.4 / (anat.size * anat.scale)  # about 1.2 px in head units
    a, b = anat.axes
    phi = np.arctan2(y / b, x / a)
    rho = np.hypot(x / a, y / b) / _harmonics(anat.wobble, phi)  # 1 on the head outline
    rad = (a + b) / 2  # rho differences * rad ~ distances in head units
    # +1 on a gyral crown, -1 in a sulcus
    fold = np.sin(anat.folds * phi + 1.8 * anat.fold_field.at(x, y, affine))
    skull, csf, grey, white = anat.levels
    r_brain = 0.86 + 0.012 * fold
    r_white = 0.7 + 0.06 * fold + 0.025 * anat.white_field.at(x, y, affine)
    tissue = _lerp(grey, white, _ramp((rho - r_white) * rad, eps))
    sulci = np.clip((-fold - 0.8) / 0.15, 0, 1) * (1 - _ramp((rho - r_white - 0.02) * rad, eps))
    tissue = _lerp(tissue, csf, 0.85 * sulci)
    fissure = np.exp(-((x / 0.012) ** 2)) * (_ramp(y + 0.3, 0.05) + _ramp(0.36 - y, 0.05))
    tissue = _lerp(tissue, csf, 0.7 * fissure)
    ventricles, nuclei = _deep_structures(anat, x, y, eps)
    tissue = _lerp(_lerp(tissue, grey, 0.6 * nuclei), csf, ventricles)
    image = skull * _ramp((rho - 1) * rad, eps)
    image = _lerp(image, csf, _ramp((rho - 0.91) * rad, eps))
    image = _lerp(image, tissue, _ramp((rho - r_brain) * rad, eps))
    return image * (1 + 0.05 * anat.texture.at(x, y, affine)), rho < r_brain


def _finish(anat: _Anatomy, clean: np.ndarray) -> np.ndarray:
    """Apply the bias field and Rician noise; clip to [0, 1]."""
    u, v = _grid(anat.size)
    gx, gy, amp = anat.bias
    smooth = anat.bias_field.on_grid(anat.size, (np.eye(2), np.zeros(2)))
    image = clean * (1 + gx * u + gy * v + amp * smooth)
    noise = anat.sigma * anat.noise
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    return np.clip(image, 0, 1).astype(np.float32)


def make_brain_slice(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A normal brain-slice-like image (H, W) float32 in [0, 1] and its brain mask (H, W) bool."""
    anat = _sample_anatomy(rng, size)
    clean, brain = _render(anat)
    return _finish(anat, clean), brain


def _place(rng: np.random.Generator, brain: np.ndarray, radius: float) -> tuple[tuple, float]:
    """A lesion centre (x, y) whose disc of `radius` stays clear of the skull; may shrink it."""
    depth = cv2.distanceTransform(brain.astype(np.uint8), cv2.DIST_L2, 5)
    margin = max(3 * brain.shape[0] / 256, 2.0)
    while not (depth >= radius + margin).any():
        radius *= 0.8
    ys, xs = np.nonzero(depth >= radius + margin)
    i = rng.integers(len(ys))
    return (float(xs[i]), float(ys[i])), radius


def _sample_lesion(rng: np.random.Generator, brain: np.ndarray, kind: str) -> _Lesion:
    """Draw a lesion of `kind` inside the brain; radius 10-32 px at 256 px."""
    s = brain.shape[0] / 256
    low = max((16 if kind == "mass" else 10) * s, 3.0)
    centre, radius = _place(rng, brain, float(rng.uniform(low, max(32 * s, low + 1))))
    irregular, aspect_low = _LESION_SHAPE[kind]
    wobble = _sample_wobble(rng, irregular)
    aspect = float(rng.uniform(aspect_low, 1.0))
    inner = {
        "tumour": radius * rng.uniform(0.5, 0.7),
        "cyst": max(rng.uniform(1.5, 2.5) * s, 1.0),
        "mass": 0.95 * aspect * (1 - irregular) / (1 + irregular) * radius,  # inside the body
    }[kind]
    lo, hi, lo2, hi2 = _LESION_LEVELS[kind]
    return _Lesion(
        kind=kind,
        centre=centre,
        radius=radius,
        angle=float(rng.uniform(0, np.pi)),
        aspect=aspect,
        wobble=wobble,
        inner_wobble=_sample_wobble(rng, 0.2),
        inner=float(inner),
        level=float(rng.uniform(lo, hi)),
        level2=float(rng.uniform(lo2, hi2)),
        texture=_Field.sample(rng, 6, 0.3, 1.0),
    )


def _outline(les: _Lesion, x, y, radius: float, wobble: np.ndarray) -> np.ndarray:
    """Approximate signed distance (px, negative inside) to a wobbly oval of largest extent
    `radius`, with the lesion's centre, orientation and aspect."""
    dx, dy = x - les.centre[0], y - les.centre[1]
    c, s = math.cos(les.angle), math.sin(les.angle)
    ex, ey = c * dx + s * dy, (c * dy - s * dx) / les.aspect
    edge = radius * _harmonics(wobble, np.arctan2(ey, ex)) / (1 + np.abs(wobble[0]).sum())
    return np.hypot(ex, ey) - edge


def _paint(les: _Lesion, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw the lesion over a noise-free slice; return the slice and the lesion mask.

    Only a window around the lesion is computed: every edge ramp is zero beyond it."""
    (cx, cy), reach, size = les.centre, les.radius + 3, clean.shape[0]
    x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
    x1, y1 = min(int(cx + reach) + 2, size), min(int(cy + reach) + 2, size)
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    sd = _outline(les, x, y, les.radius, les.wobble)
    tex = 1 + 0.06 * les.texture((x - cx) / les.radius, (y - cy) / les.radius)
    out = clean[y0:y1, x0:x1]
    if les.kind == "tumour":  # dark oedema halo around a bright, irregular core
        core = _outline(les, x, y, les.inner, les.inner_wobble)
        out = out * (1 - (1 - les.level2) * _ramp(sd, 1.5))
        out = _lerp(out, les.level * tex, _ramp(core, 1.0))
    elif les.kind == "cyst":  # thin bright rim around a dark, sharply bounded cavity
        out = _lerp(out, les.level * tex, _ramp(sd, 0.7))
        out = _lerp(out, les.level2, _ramp(sd + les.inner, 0.7))
    else:  # mass: moderately bright body; the displacement was applied before
        out = _lerp(out, les.level * tex, _ramp(sd, 1.2))
    clean, mask = clean.copy(), np.zeros(clean.shape, bool)
    clean[y0:y1, x0:x1], mask[y0:y1, x0:x1] = out, sd < 0
    return clean, mask


def _mass_effect(les: _Lesion, brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward displacement (du, dv) in image units that pushes tissue radially away from
    the mass as if a disc of radius `les.inner` were inserted, fading with distance and to zero
    at the brain's edge so the skull and CSF stay put."""
    size = brain.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = x - les.centre[0], y - les.centre[1]
    dist = np.maximum(np.hypot(dx, dy), 1e-6)
    push = dist - np.sqrt(np.maximum(dist**2 - les.inner**2, 0))
    fade = np.exp(-((np.maximum(dist - les.radius, 0) / (1.5 * les.radius)) ** 2))
    depth = cv2.distanceTransform(brain.astype(np.uint8), cv2.DIST_L2, 5)
    k = push * fade * np.clip(depth / (0.5 * les.radius), 0, 1) / dist * (2 / size)
    return dx * k, dy * k


def make_abnormal_slice(
    rng: np.random.Generator, size: int = 256, kind: str = "tumour"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slice with one lesion: (image (H, W) float32, brain mask, lesion mask), both bool.

    The anatomy is drawn first, exactly as `make_brain_slice` draws it from the same generator
    state, so normal and abnormal slices differ only by the lesion (and, for a mass, by the
    displaced tissue around it)."""
    if kind not in LESION_KINDS:
        raise AnomedError(f"unknown lesion kind {kind!r}. Fix: use one of {LESION_KINDS}.")
    anat = _sample_anatomy(rng, size)
    clean, brain = _render(anat)
    les = _sample_lesion(rng, brain, kind)
    if kind == "mass":
        clean, brain = _render(anat, _mass_effect(les, brain))
    clean, mask = _paint(les, clean)
    return _finish(anat, clean), brain, mask


def _check_config(cfg: PhantomConfig) -> None:
    if cfg.image_size < 64:
        raise AnomedError(f"phantom image_size {cfg.image_size} is too small. Fix: use >= 64.")
    if min(cfg.n_train, cfg.n_test_normal, cfg.n_test_abnormal, cfg.seed) < 0:
        raise AnomedError(
            "phantom counts and seed must be >= 0. Fix: check n_train, n_test_*, seed."
        )
    unknown = set(cfg.lesion_kinds) - set(LESION_KINDS)
    if unknown or (cfg.n_test_abnormal > 0 and not cfg.lesion_kinds):
        raise AnomedError(
            f"phantom lesion_kinds {tuple(cfg.lesion_kinds)!r} is invalid. "
            f"Fix: choose a non-empty subset of {LESION_KINDS}."
        )


def _save_png(path: Path, image: np.ndarray) -> None:
    """8-bit grayscale PNG from a [0, 1] float image or a bool mask (-> 0/255)."""
    Image.fromarray(np.round(image.astype(np.float32) * 255).astype(np.uint8)).save(path)


def _readme(cfg: PhantomConfig) -> str:
    return (
        "anomed synthetic brain-slice phantom dataset (not patient data)\n"
        "Written by anomed.data.phantoms.brain.write_phantom_dataset.\n"
        f"seed: {cfg.seed}\nimage_size: {cfg.image_size}\n"
        f"train/normal: {cfg.n_train} normal slices (the k-shot training pool)\n"
        f"test/normal: {cfg.n_test_normal} normal slices\n"
        f"test/abnormal: {cfg.n_test_abnormal} slices with one lesion each, kinds cycled: "
        f"{', '.join(cfg.lesion_kinds)}\n"
        "test/masks/<stem>_mask.png: ground truth, 255 = lesion. A tumour's mask covers its\n"
        "bright core and dark oedema halo; a cyst's its cavity and rim; a mass's its body only,\n"
        "not the normal tissue it displaces.\n"
        "The same seed and config give byte-identical files.\n"
    )


def _write_all(tmp: Path, root: Path, cfg: PhantomConfig) -> DatasetSplits:
    """Write every file under `tmp`; return samples whose paths point under `root`."""
    for sub in ("train/normal", "test/normal", "test/abnormal", "test/masks"):
        (tmp / sub).mkdir(parents=True)
    size, splits = cfg.image_size, DatasetSplits("phantom", root)
    for i in range(cfg.n_train):
        rel = Path("train/normal", f"train_normal_{i:04d}.png")
        _save_png(tmp / rel, make_brain_slice(np.random.default_rng([cfg.seed, 0, i]), size)[0])
        splits.train.append(Sample(root / rel, NORMAL, (), "brain"))
    for i in range(cfg.n_test_normal):
        rel = Path("test/normal", f"test_normal_{i:04d}.png")
        _save_png(tmp / rel, make_brain_slice(np.random.default_rng([cfg.seed, 1, i]), size)[0])
        splits.test.append(Sample(root / rel, NORMAL, (), "brain"))
    for i in range(cfg.n_test_abnormal):
        kind = cfg.lesion_kinds[i % len(cfg.lesion_kinds)]
        stem = f"test_abnormal_{i:04d}_{kind}"
        rng = np.random.default_rng([cfg.seed, 2, i])
        image, _, mask = make_abnormal_slice(rng, size, kind)
        rel, rel_mask = Path("test/abnormal", f"{stem}.png"), Path("test/masks", f"{stem}_mask.png")
        _save_png(tmp / rel, image)
        _save_png(tmp / rel_mask, mask)
        splits.test.append(Sample(root / rel, ABNORMAL, (root / rel_mask,), "brain"))
    (tmp / "README.txt").write_text(_readme(cfg))
    return splits


def write_phantom_dataset(
    root: str | Path, cfg: PhantomConfig | None = None, overwrite: bool = False
) -> DatasetSplits:
    """Write a phantom dataset in the generic folder layout and return its splits.

    Files go to a hidden sibling folder first and are renamed into place at the end, so an
    interrupted run never leaves a half-written `root`."""
    cfg = cfg or PhantomConfig()
    _check_config(cfg)
    root = Path(root).absolute()
    return write_atomically(root, overwrite, lambda tmp: _write_all(tmp, root, cfg))


def write_atomically(root: Path, overwrite: bool, writer: Callable[[Path], T]) -> T:
    """Run `writer(tmp)` on a hidden sibling folder, then rename it to `root`.

    A non-empty `root` is refused unless `overwrite`; on any error (Ctrl-C included) the
    temporary folder is removed and `root` is left as it was."""
    if root.exists() and not root.is_dir():
        raise AnomedError(f"{root}: exists and is not a folder. Fix: choose another path.")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise AnomedError(
            f"{root}: folder exists and is not empty. "
            "Fix: choose a new folder, or pass --overwrite to replace it (overwrite=True "
            "from Python)."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        result = writer(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = root.with_name(f".{root.name}.old")
    if root.exists():
        shutil.rmtree(old, ignore_errors=True)
        root.rename(old)
    tmp.rename(root)
    shutil.rmtree(old, ignore_errors=True)
    return result
