"""Synthetic 3D head phantoms in four MRI-like "sequences", written as NIfTI (and DICOM).

One anatomy (a tissue label volume) is rendered with four contrast mappings, so a model trained
on one sequence can be tested on the others: T1 (white matter bright, CSF dark), T1CE (T1 plus a
strongly enhancing tumour rim), T2 (CSF bright, white matter darker) and FLAIR (CSF suppressed,
oedema and tumour bright). Abnormal heads carry one tumour: a necrotic core, an enhancing rim and
a surrounding oedema, all three inside the exact lesion mask.

Arrays are canonical RAS+ (axis 0 -> patient Right, 1 -> Anterior, 2 -> Superior; see
`anomed.data.volumes`). The head is deliberately asymmetric so orientation errors show: a nose
and eyes anterior, a neck inferior, and a fiducial capsule (as taped on for scans) on the
patient's LEFT temple. Synthetic data for testing the pipeline, not anatomy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from anomed.data.phantoms.brain import write_atomically
from anomed.data.sample import ABNORMAL, NORMAL
from anomed.errors import AnomedError

SEQUENCES = ("t1", "t1ce", "t2", "flair")
TISSUES = ("background", "scalp", "skull", "csf", "grey", "white", "eye", "marker",
           "oedema", "enhancing", "necrosis")  # fmt: skip
BACKGROUND, SCALP, SKULL, CSF, GREY, WHITE, EYE, MARKER, OEDEMA, ENHANCING, NECROSIS = range(11)
LESION_CLASSES = (OEDEMA, ENHANCING, NECROSIS)  # the lesion mask is their union
SCALE = 1000.0  # rendered intensities are in arbitrary "scanner units", about 0..1000
# mean intensity of each tissue class (rows follow TISSUES), in units of SCALE
_CONTRAST = {
    #                bg  scalp skull  csf  grey white  eye  marker oedema enh  necr
    "t1": np.array([0.0, 0.75, 0.08, 0.15, 0.45, 0.70, 0.12, 0.90, 0.38, 0.45, 0.20]),
    "t1ce": np.array([0.0, 0.75, 0.08, 0.15, 0.47, 0.70, 0.12, 0.90, 0.40, 0.95, 0.25]),
    "t2": np.array([0.0, 0.55, 0.06, 0.95, 0.60, 0.40, 0.90, 0.80, 0.80, 0.70, 0.90]),
    "flair": np.array([0.0, 0.60, 0.06, 0.08, 0.50, 0.40, 0.08, 0.85, 0.85, 0.75, 0.55]),
}
_DICOM_RESCALE = (0.5, -10.0)  # (slope, intercept) of the DICOM case: stored = (x + 10) / 0.5


@dataclass(frozen=True)
class VolumeCase:
    """One written phantom head: its files (absolute paths) and label."""

    name: str
    label: int  # NORMAL or ABNORMAL
    sequences: dict[str, Path]  # sequence name -> .nii.gz
    mask: Path  # lesion_mask.nii.gz, all zero for a normal case
    dicom: Path | None  # the T1 DICOM series folder, for one case only


def _coords(shape: tuple[int, int, int]) -> list[np.ndarray]:
    """Voxel-centre coordinates (u, v, w) in (-1, 1) along each axis, each (X, Y, Z)."""
    axes = [((np.arange(n, dtype=np.float32) + 0.5) * (2 / n) - 1) for n in shape]
    return np.meshgrid(*axes, indexing="ij")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean, unit std; float32 of `shape`."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, np.float32), sigma, truncate=3.0)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _ball(x, y, z, centre, radii) -> np.ndarray:
    """bool: inside the axis-aligned ellipsoid."""
    return sum(((c - m) / r) ** 2 for c, m, r in zip((x, y, z), centre, radii, strict=True)) <= 1


def _anatomy(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Tissue labels (X, Y, Z) int8 of a normal head."""
    u, v, w = _coords(shape)
    du, dv, dw = rng.uniform(-0.03, 0.03, 3)
    a, b, c = np.array([0.74, 0.86, 0.72]) * rng.uniform(0.93, 1.02, 3)
    x, y, z = u - du, v - dv, w - (0.12 + dw)  # head-centred coordinates
    rho = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    rho *= 1 + 0.015 * _smooth_noise(rng, shape, 4.0)  # a slightly irregular outline
    fold, white = _smooth_noise(rng, shape, 1.5), _smooth_noise(rng, shape, 3.0)
    vent = rng.uniform(0.85, 1.15, 2)  # left, right ventricle size
    labels = np.zeros(shape, np.int8)
    labels[_ball(x, y, z, (0, -0.15, -c), (0.5 * a, 0.55 * b, 0.9 * c)) & (z < -0.5 * c)] = SCALP
    labels[rho <= 1] = SCALP
    labels[rho <= 0.92] = SKULL
    labels[rho <= 0.86] = CSF
    brain = rho <= 0.82 + 0.015 * fold
    labels[brain] = GREY
    labels[brain & (rho <= 0.62 + 0.06 * white)] = WHITE
    labels[brain & (fold > 1.0) & (rho > 0.66)] = CSF  # sulci
    labels[brain & (np.abs(x) < 0.02) & (z > 0.2 * c)] = CSF  # interhemispheric fissure
    for side, k in ((-1, vent[0]), (1, vent[1])):  # lateral ventricles
        radii = k * np.array([0.08, 0.3, 0.16])
        labels[_ball(x, y, z, (side * 0.11 * a, 0.05, 0.1 * c), radii)] = CSF
    for side in (-1, 1):
        labels[_ball(x, y, z, (side * 0.3, 0.8 * b, -0.35 * c), (0.11, 0.11, 0.11))] = EYE
    nose = _ball(x, y, z, (0, 0.97 * b, -0.5 * c), (0.07, 0.12, 0.16)) & (labels == BACKGROUND)
    labels[nose] = SCALP
    labels[_ball(x, y, z, (-(a + 0.06), 0.15, 0.1 * c), (0.08, 0.08, 0.08))] = MARKER  # left
    return labels


def _add_tumour(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Paint a tumour (necrotic core, enhancing rim, oedema in the brain around it) in place;
    return its mask. The core lies wholly inside brain tissue."""
    brain = np.isin(labels, (GREY, WHITE))
    depth = ndimage.distance_transform_edt(brain)  # voxels to the nearest non-brain voxel
    radius = float(rng.uniform(0.08, 0.13) * min(labels.shape))
    while not (depth >= radius + 1).any() and radius > 1.5:
        radius *= 0.85
    candidates = np.argwhere(depth >= min(radius + 1, depth.max()))
    centre = candidates[rng.integers(len(candidates))]
    grid = np.indices(labels.shape, dtype=np.float32)  # (3, X, Y, Z)
    dist = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    dist /= 1 + 0.15 * _smooth_noise(rng, labels.shape, 2.0)  # an irregular outline
    rim = max(float(rng.uniform(0.2, 0.35) * radius), 1.0)
    oedema = brain & (dist <= radius * rng.uniform(1.4, 1.8))
    labels[oedema] = OEDEMA
    labels[dist <= radius] = ENHANCING
    labels[dist <= radius - rim] = NECROSIS
    return np.isin(labels, LESION_CLASSES)


def make_head(
    rng: np.random.Generator, shape: tuple[int, int, int] = (64, 64, 48), lesion: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A head phantom: (labels (X, Y, Z) int8 tissue classes, see TISSUES; lesion mask bool).

    The anatomy is drawn first, so the same generator state gives the same head with or
    without the tumour; without it the mask is all False."""
    labels = _anatomy(rng, tuple(int(s) for s in shape))
    mask = _add_tumour(rng, labels) if lesion else np.zeros(labels.shape, bool)
    return labels, mask


def render_sequence(labels: np.ndarray, sequence: str, rng: np.random.Generator) -> np.ndarray:
    """Render labels as one sequence: float32 (X, Y, Z) in scanner units (about 0..SCALE), with
    tissue texture, partial-volume blur, a smooth bias field and Rician noise."""
    if sequence not in _CONTRAST:
        raise AnomedError(f"unknown sequence {sequence!r}. Fix: use one of {SEQUENCES}.")
    levels = _CONTRAST[sequence] * (1 + rng.normal(0, 0.03, len(TISSUES)))
    image = levels.astype(np.float32)[labels]
    image *= 1 + 0.04 * _smooth_noise(rng, labels.shape, 1.5)
    image = ndimage.gaussian_filter(image, 0.6)
    u, v, w = _coords(labels.shape)
    gu, gv, gw = rng.uniform(-0.08, 0.08, 3)
    smooth = _smooth_noise(rng, labels.shape, min(labels.shape) / 6)
    image *= 1 + gu * u + gv * v + gw * w + 0.03 * smooth
    sigma = float(rng.uniform(0.01, 0.015))
    noise = sigma * rng.standard_normal((2, *labels.shape), np.float32)
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    return (image * SCALE).astype(np.float32)


def phantom_affine(
    shape: tuple[int, int, int], spacing: tuple[float, float, float] = (1.0, 1.0, 1.5)
) -> np.ndarray:
    """RAS affine (4, 4): axis-aligned voxels of `spacing` mm, the volume centred on 0."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(spacing)
    return affine


def _ds(value: float) -> str:
    """A DICOM decimal string (<= 16 characters); avoids "-0"."""
    return f"{float(value) + 0.0:.6g}"


def write_dicom_series(
    folder: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    uid_seed: str = "anomed",
    rescale: tuple[float, float] = _DICOM_RESCALE,
    window: tuple[float, float] | None = None,
    description: str = "T1 phantom",
) -> list[Path]:
    """Write canonical (X, Y, Z) data as an axial MR DICOM series, one file per slice.

    Pixels are uint16 = round((value - intercept) / slope), rows running anterior -> posterior
    and columns right -> left (as a scanner stores an axial slice). UIDs derive from
    `uid_seed`, so the same call writes the same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slope, intercept = rescale
    stored = np.clip(np.round((data - intercept) / slope), 0, 65535).astype(np.uint16)
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    # unit directions of increasing column index (-axis 0) then row index (-axis 1)
    cosines = np.concatenate([-lps[:, 0] / spacing[0], -lps[:, 1] / spacing[1]])
    uids = {k: generate_uid(entropy_srcs=[uid_seed, k]) for k in ("study", "series", "frame")}
    paths = []
    for k in range(data.shape[2]):
        origin = affine @ np.array([data.shape[0] - 1, data.shape[1] - 1, k, 1.0])
        ds = _dicom_slice(stored[::-1, ::-1, k].T, uid_seed, uids, k)  # (R, C) = (Y, X)
        ds.ImagePositionPatient = [_ds(p) for p in (-origin[0], -origin[1], origin[2])]
        ds.ImageOrientationPatient = [_ds(d) for d in cosines]
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = ds.SpacingBetweenSlices = _ds(spacing[2])
        ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = _ds(window[0]), _ds(window[1])
        ds.SeriesDescription = description
        paths.append(folder / f"IM{k + 1:04d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def _dicom_slice(pixels: np.ndarray, uid_seed: str, uids: dict, k: int) -> Dataset:
    """A minimal MR image dataset holding uint16 `pixels` (R, C), without geometry."""
    sop = generate_uid(entropy_srcs=[uid_seed, "sop", str(k)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.PatientName, ds.PatientID, ds.Modality = f"Phantom^{uid_seed}", uid_seed[:64], "MR"
    ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels, "<u2").tobytes()
    return ds


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def _check_args(n_cases: int, shape: tuple[int, ...], abnormal_fraction: float) -> None:
    if n_cases < 1 or not 0 <= abnormal_fraction <= 1:
        raise AnomedError(
            f"phantom volumes: n_cases={n_cases}, abnormal_fraction={abnormal_fraction}. "
            "Fix: use n_cases >= 1 and abnormal_fraction in [0, 1]."
        )
    if len(shape) != 3 or min(shape) < 16:
        raise AnomedError(f"phantom volume shape {tuple(shape)} is invalid. Fix: 3 sides >= 16.")


def _write_case(tmp: Path, name: str, abnormal: bool, seeds: list[int], spec: dict) -> dict:
    """Write one case's NIfTI files under tmp/name; return its cases.json entry."""
    (tmp / name).mkdir()
    labels, mask = make_head(np.random.default_rng(seeds), spec["shape"], lesion=abnormal)
    affine = phantom_affine(spec["shape"], spec["spacing"])
    files = {}
    for k, seq in enumerate(SEQUENCES):
        volume = render_sequence(labels, seq, np.random.default_rng([*seeds, k + 1]))
        files[seq] = f"{name}/{seq}.nii.gz"
        _save_nifti(tmp / files[seq], volume, affine)
        if seq == "t1" and spec["dicom"]:
            lo, hi = np.percentile(volume, (0.5, 99.5))
            window = (round((lo + hi) / 2), round(hi - lo))
            uid_seed = f"{name}-seed{seeds[0]}"
            write_dicom_series(tmp / name / "dicom_t1", volume, affine, uid_seed, window=window)
    _save_nifti(tmp / name / "lesion_mask.nii.gz", mask.astype(np.uint8), affine)
    return {
        "name": name,
        "label": ABNORMAL if abnormal else NORMAL,
        "files": files,
        "mask": f"{name}/lesion_mask.nii.gz",
        "dicom": f"{name}/dicom_t1" if spec["dicom"] else None,
        "lesion_voxels": int(mask.sum()),
    }


@dataclass
class VolumePhantomConfig:
    """Phantom heads: case count, seed, voxel grid and spacing (mm), abnormal share."""

    n_cases: int = 4
    seed: int = 0
    shape: tuple[int, int, int] = (64, 64, 48)
    abnormal_fraction: float = 0.5
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.5)


def write_phantom_volumes(
    root: str | Path, cfg: VolumePhantomConfig | None = None, overwrite: bool = False
) -> list[VolumeCase]:
    """Write phantom heads: root/<case>/{t1,t1ce,t2,flair,lesion_mask}.nii.gz, a T1 DICOM
    series root/<case>/dicom_t1/ for the first abnormal case (else the first case), and
    root/cases.json. Abnormal cases are spread evenly (case i is abnormal when
    floor((i + 1) f) > floor(i f)). Atomic; the same arguments give the same arrays."""
    c = cfg or VolumePhantomConfig()
    n_cases, seed, spacing = c.n_cases, c.seed, tuple(c.spacing)
    shape = tuple(int(s) for s in c.shape)
    _check_args(n_cases, shape, c.abnormal_fraction)
    f = c.abnormal_fraction
    abnormal = [int((i + 1) * f) > int(i * f) for i in range(n_cases)]
    dicom_case = abnormal.index(True) if any(abnormal) else 0
    root = Path(root).absolute()

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        cases = []
        for i in range(n_cases):
            spec = {"shape": shape, "spacing": spacing, "dicom": i == dicom_case}
            cases.append(_write_case(tmp, f"case_{i:03d}", abnormal[i], [seed, i], spec))
        manifest = {"format": "anomed-phantom-volumes", "seed": seed, "shape": list(shape)}
        manifest |= {"spacing": list(spacing), "sequences": list(SEQUENCES), "cases": cases}
        (tmp / "cases.json").write_text(json.dumps(manifest, indent=1))
        (tmp / "README.txt").write_text(
            f"anomed synthetic head phantoms (not patient data), {n_cases} cases, seed {seed}\n"
        )

    write_atomically(root, overwrite, write)
    return load_phantom_cases(root)


def load_phantom_cases(root: str | Path) -> list[VolumeCase]:
    """The cases listed in root/cases.json, with absolute paths."""
    root = Path(root).absolute()
    try:
        manifest = json.loads((root / "cases.json").read_text())
        return [
            VolumeCase(
                name=c["name"],
                label=int(c["label"]),
                sequences={k: root / v for k, v in c["files"].items()},
                mask=root / c["mask"],
                dicom=None if c["dicom"] is None else root / c["dicom"],
            )
            for c in manifest["cases"]
        ]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise AnomedError(
            f"{root / 'cases.json'}: missing or invalid ({type(exc).__name__}: {exc}). "
            "Fix: write the phantom with write_phantom_volumes(root)."
        ) from exc
