"""The Volume type and the checks every volume reader (NIfTI, DICOM) shares.

A Volume holds a 3D scan in canonical RAS+ orientation (see `anomed.data.volumes` for the
convention and the views). This module sits below both readers: `anomed.data.volumes` (NIfTI,
dispatch, slicing) and `anomed.data.dicom` (DICOM series) import it, and it imports neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nibabel import orientations as ornt

from anomed.errors import AnomedError

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
DEFAULT_MAX_VOXELS = 1 << 28  # 268 M voxels: 1 GiB as float32 (a 1024 x 1024 x 256 scan)


def max_voxels() -> int:
    """The largest volume read, in voxels: ANOMED_MAX_VOXELS, else 2^28."""
    raw = os.environ.get("ANOMED_MAX_VOXELS", "").strip()
    try:
        value = int(float(raw)) if raw else DEFAULT_MAX_VOXELS
    except ValueError:
        value = 0
    if value < 1:
        raise AnomedError(
            f"ANOMED_MAX_VOXELS={raw!r}: expected a positive whole number of voxels. "
            "Fix: unset it or set e.g. ANOMED_MAX_VOXELS=500000000."
        )
    return value


def check_voxels(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a zero-size, negative or too large shape before anything is allocated."""
    if any(int(s) < 1 for s in shape):
        raise AnomedError(
            f"{path}: the header gives shape {tuple(shape)}, with a zero-size or negative "
            "dimension; there is no image to read. Fix: re-export the scan."
        )
    n = int(np.prod([int(s) for s in shape], dtype=object))
    if n > max_voxels():
        raise AnomedError(
            f"{path}: the header claims {tuple(shape)} = {n:,} voxels, above the limit of "
            f"{max_voxels():,} voxels (a damaged header, or a scan too large to read). Fix: "
            "check the file; for a genuine scan crop or downsample it, or raise the limit with "
            f"ANOMED_MAX_VOXELS={n}."
        )


@dataclass
class Volume:
    """A 3D scan in canonical RAS+ orientation, plus what is needed to write maps back."""

    data: np.ndarray  # (X, Y, Z) float32, canonical RAS+
    affine: np.ndarray  # (4, 4) voxel -> world (RAS mm) of `data`
    source_affine: np.ndarray  # (4, 4) of the array as stored in the file
    source_shape: tuple[int, ...]  # the file's array shape (may carry a trailing 1)
    path: Path
    kind: str  # "nifti" or "dicom"
    modality: str = ""  # DICOM Modality (MR, CT, ...); "" for NIfTI
    window: tuple[float, float] | None = None  # DICOM (WindowCenter, WindowWidth) in data units
    series_uid: str = ""  # DICOM SeriesInstanceUID
    header: Any = field(default=None, repr=False)  # the NIfTI header, reused by write_nifti

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes (X, Y, Z)."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(0)))


def check_affine(path: Path, affine: np.ndarray) -> None:
    """Refuse a voxel-to-world affine with NaN/Inf values or (near-)parallel or zero axes."""
    m = np.asarray(affine, np.float64)[:3, :3]
    problem = None
    if not np.isfinite(affine).all():
        problem = "holds NaN or Inf values"
    else:
        sv = np.linalg.svd(m, compute_uv=False)
        if sv.max() <= 0 or sv.min() <= 1e-6 * sv.max():
            problem = "is singular (a zero voxel spacing, or two axes along one direction)"
    if problem:
        raise AnomedError(
            f"{path}: the voxel-to-world affine {problem}, so axial, sagittal and coronal "
            "cannot be told apart. Fix: repair the header's geometry (NIfTI qform/sform, DICOM "
            "ImageOrientationPatient/PixelSpacing) or re-export the scan."
        )


def canonical(volume_args: dict, arr: np.ndarray, affine: np.ndarray) -> Volume:
    """A Volume whose data is `arr` (stored order, 3D) reoriented to the closest RAS+."""
    check_affine(volume_args["path"], affine)
    to_ras = ornt.io_orientation(affine)
    data = ornt.apply_orientation(arr, to_ras)
    canon_affine = affine @ ornt.inv_ornt_aff(to_ras, arr.shape)
    data = np.ascontiguousarray(np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0), np.float32)
    return Volume(data=data, affine=canon_affine, source_affine=affine.copy(), **volume_args)


def reason(exc: BaseException) -> str:
    """`Type: message` on one line (the CLI prints errors on one line)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def check_exists(path: Path) -> None:
    if not path.exists():
        raise AnomedError(f"{path}: no such file or folder. Fix: check the path.")


def walk_files(folder: Path) -> list[Path]:
    """Files under `folder`, recursively, sorted, hidden ones skipped."""
    files = (p for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in files if not any(s[0] == "." for s in p.relative_to(folder).parts))
