"""Read 3D medical volumes (NIfTI, DICOM), slice them in three views, write 3D maps back.

Every volume is held in one canonical orientation, RAS+: array axis 0 runs from the patient's
left to their Right, axis 1 from posterior to Anterior, axis 2 from inferior to Superior. So
"axial", "sagittal" and "coronal" mean the same thing for every file, whatever its stored order.

Display convention of the slices (`slice_volume`), the radiological one:
- axial (S = Z slices, inferior -> superior; H = Y, W = X): viewed from the feet, anterior at the
  top, the patient's left on the image's right;
- coronal (S = Y slices, posterior -> anterior; H = Z, W = X): viewed from the front, superior at
  the top, the patient's left on the image's right;
- sagittal (S = X slices, left -> right; H = Z, W = Y): superior at the top, anterior on the
  image's left.

DICOM reading (modality units, MONOCHROME1 inversion, series sorting) lives in
`anomed.data.dicom`; `read_volume` dispatches to it.

`write_nifti` undoes the reorientation, so a map computed on the canonical array is written with
the input file's own axis order, shape and affine and overlays the input in any viewer.

Hostile files are refused with one `AnomedError` naming the file and a fix, never a traceback:
a header claiming more than `max_voxels()` voxels (default 2^28, ANOMED_MAX_VOXELS) is refused
before any voxel is read, as are zero-size or negative dimensions, complex or RGB datatypes,
and a NaN/Inf or singular voxel-to-world affine (its views would be meaningless).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from anomed.data.geometry import (
    DICOM_SUFFIXES,
    Volume,
    canonical,
    check_exists,
    check_voxels,
    reason,
    walk_files,
)
from anomed.data.io import IMAGE_EXTENSIONS
from anomed.errors import AnomedError

VIEWS = ("axial", "sagittal", "coronal")
# view -> axis order of the canonical array that gives (slice, row, column) before the flips
_PERMS = {"axial": (2, 1, 0), "sagittal": (0, 2, 1), "coronal": (1, 2, 0)}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NIFTI_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    OverflowError,
    TypeError,
    zlib.error,
    nib.filebasedimages.ImageFileError,
    nib.spatialimages.HeaderDataError,
)


def _is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


# ----------------------------------------------------------------------------- NIfTI


def read_nifti(path: str | Path) -> Volume:
    """Read a 3D .nii / .nii.gz (scaling applied, NaN -> 0) and reorient it to RAS+."""
    path = Path(path)
    check_exists(path)
    try:
        img = nib.load(path)
        shape = tuple(int(s) for s in img.shape)
        check_voxels(path, shape)
        if len(shape) > 3 and any(s > 1 for s in shape[3:]):
            raise AnomedError(
                f"{path}: is a {len(shape)}D image of shape {shape} ({int(np.prod(shape[3:]))} "
                "volumes); anomed reads one 3D volume. Fix: extract one volume, e.g. "
                "`fslroi in.nii.gz vol0.nii.gz 0 1` or nibabel's `img.slicer[..., 0]`."
            )
        _check_nifti_dtype(path, img.get_data_dtype())
        arr = img.get_fdata(dtype=np.float32)
    except _NIFTI_ERRORS as exc:
        raise AnomedError(
            f"{path}: cannot read as NIfTI ({reason(exc)}); the file is truncated, "
            "corrupt or not NIfTI. Fix: re-export or re-download it."
        ) from exc
    if len(shape) < 2:
        raise AnomedError(f"{path}: has shape {shape}, not a 3D volume. Fix: pass a 3D image.")
    arr = arr.reshape(shape[:3] if len(shape) >= 3 else (*shape, 1))  # (X, Y, Z)
    args = dict(source_shape=shape, path=path, kind="nifti", header=img.header)
    return canonical(args, arr, np.asarray(img.affine, np.float64))


def _check_nifti_dtype(path: Path, dtype: np.dtype) -> None:
    """Only real scalar voxels are intensities: complex and RGB(A) datatypes are refused."""
    if dtype.kind not in "biuf":
        what = "complex" if dtype.kind == "c" else "RGB/structured" if dtype.kind == "V" else "a"
        raise AnomedError(
            f"{path}: voxels are of {what} datatype {dtype}, not scalar intensities. Fix: save "
            "one real-valued channel (e.g. the magnitude, or a greyscale conversion) as float32."
        )


def write_nifti(path: str | Path, data: np.ndarray, volume: Volume) -> Path:
    """Write a canonical (X, Y, Z) map in `volume`'s original orientation, shape and affine.

    bool maps are written as uint8, anything else as float32. The file is written to a hidden
    sibling first and renamed, so a crash never leaves half a file."""
    path = Path(path)
    if not _is_nifti_name(path):
        raise AnomedError(f"{path}: output must end in .nii or .nii.gz. Fix: rename it.")
    data = np.asarray(data)
    if data.shape != volume.data.shape:
        raise ValueError(f"map shape {data.shape} != volume shape {volume.data.shape}")
    dtype = np.uint8 if data.dtype == np.bool_ else np.float32
    back = ornt.ornt_transform(ornt.axcodes2ornt("RAS"), ornt.io_orientation(volume.source_affine))
    arr = ornt.apply_orientation(data.astype(dtype), back).reshape(volume.source_shape)
    img = _nifti_like(np.ascontiguousarray(arr), volume)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{path.name}")
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _nifti_like(arr: np.ndarray, volume: Volume) -> nib.Nifti1Image:
    """A NIfTI image of `arr` with the volume's source affine and, for NIfTI input, its header
    (units, xform codes) minus intensity scaling, display range and intent."""
    hdr = volume.header
    if isinstance(hdr, nib.Nifti1Header):  # Nifti2Header is a subclass
        cls = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
        img = cls(arr, volume.source_affine, header=hdr.copy())
        img.set_qform(volume.source_affine, int(hdr["qform_code"]) or 1)
        img.set_sform(volume.source_affine, int(hdr["sform_code"]) or 1)
        img.header.set_intent("none")
    else:
        img = nib.Nifti1Image(arr, volume.source_affine)
        img.set_qform(volume.source_affine, 1)
        img.set_sform(volume.source_affine, 1)
        img.header.set_xyzt_units("mm")
    img.set_data_dtype(arr.dtype)
    img.header.set_slope_inter(None, None)
    img.header["cal_min"], img.header["cal_max"] = 0, 0
    img.header["descrip"] = b"anomed map"
    return img


# ----------------------------------------------------------------------------- dispatch


def _looks_dicom(path: Path) -> bool:
    """By name (.dcm, ...), else by the 'DICM' marker at byte 128 of an extension-less file."""
    name = path.name.lower()
    if name.endswith(DICOM_SUFFIXES):
        return True
    if path.suffix.lower() in IMAGE_EXTENSIONS or name.endswith(_NIFTI_SUFFIXES):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_volume_path(path: str | Path) -> bool:
    """True for .nii / .nii.gz / .dcm files, DICOM files without extension and folders that
    contain DICOM files."""
    path = Path(path)
    if path.is_dir():
        return any(_looks_dicom(p) for p in walk_files(path))
    return _is_nifti_name(path) or (path.is_file() and _looks_dicom(path))


def find_volumes(root: str | Path) -> list[Path]:
    """The volumes under a folder: every NIfTI file and every folder directly holding DICOM
    files (one series folder each); `[root]` when `root` is itself a volume path."""
    root = Path(root)
    if not root.is_dir():
        return [root] if is_volume_path(root) else []
    files = walk_files(root)
    found = {p for p in files if _is_nifti_name(p)}
    found |= {p.parent for p in files if _looks_dicom(p)}
    return sorted(found)


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a NIfTI file, a DICOM file or a DICOM series folder, by its name / contents."""
    path = Path(path)
    check_exists(path)
    if _is_nifti_name(path):
        return read_nifti(path)
    if path.is_dir() or _looks_dicom(path):
        from anomed.data.dicom import read_dicom_series  # lazy: pydicom loads only for DICOM

        return read_dicom_series(path, series_uid)
    raise AnomedError(
        f"{path}: not a volume. Fix: pass a .nii/.nii.gz file, a DICOM file or a DICOM folder."
    )


def read_mask_volume(path: str | Path, like: Volume | None = None) -> np.ndarray:
    """A lesion mask volume as canonical bool (X, Y, Z): voxels > 0.5 (0/1, 0/255 and label
    maps alike). With `like`, its grid must match (same canonical shape and affine)."""
    mask = read_volume(path)
    if like is not None:
        same = mask.data.shape == like.data.shape
        if not same or not np.allclose(mask.affine, like.affine, atol=1e-3):
            raise AnomedError(
                f"{mask.path}: mask grid (shape {mask.data.shape}) does not match {like.path} "
                f"(shape {like.data.shape}) or its affine. Fix: resample the mask to the scan."
            )
    return mask.data > 0.5


# ----------------------------------------------------------------------------- intensities


def window(
    data: np.ndarray,
    center: float | None = None,
    width: float | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Map intensities to float32 [0, 1]: the linear window [center - width/2, center + width/2]
    when both are given (width > 0), else the clip between the volume's `percentiles`.
    A constant volume becomes all zeros; NaN becomes 0."""
    data = np.asarray(data, np.float32)
    if center is not None and width is not None and width > 0:
        lo, hi = center - width / 2, center + width / 2
    else:
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return np.zeros(data.shape, np.float32)
        lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        return (data > lo).astype(np.float32)
    out = np.clip((data - np.float32(lo)) / np.float32(hi - lo), 0, 1)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def normalize_volume(
    volume: Volume, percentiles: tuple[float, float] = (0.5, 99.5), use_header: bool = True
) -> Volume:
    """A copy with data in [0, 1]: the DICOM header's window if present (and `use_header`),
    else the per-volume percentile clip."""
    center, width = volume.window if (use_header and volume.window) else (None, None)
    return replace(volume, data=window(volume.data, center, width, percentiles))


# ----------------------------------------------------------------------------- slicing


def _check_view(view: str) -> tuple[int, int, int]:
    if view not in _PERMS:
        raise AnomedError(f"unknown view {view!r}. Fix: use one of {VIEWS}.")
    return _PERMS[view]


def slice_volume(data: np.ndarray, view: str) -> np.ndarray:
    """Canonical (X, Y, Z) -> slices (S, H, W) of `view` in the display convention of the
    module docstring (axial (Z, Y, X), sagittal (X, Z, Y), coronal (Y, Z, X))."""
    perm = _check_view(view)
    if np.ndim(data) != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) array, got shape {np.shape(data)}")
    return np.ascontiguousarray(np.flip(np.transpose(data, perm), (1, 2)))


def stack_slices(slices: np.ndarray, view: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The exact inverse of `slice_volume`: slices (S, H, W) of `view` -> (X, Y, Z) `shape`."""
    perm = _check_view(view)
    slices = np.asarray(slices)
    expected = tuple(shape[p] for p in perm)
    if slices.shape != expected:
        raise ValueError(f"{view} slices of {tuple(shape)} are {expected}, not {slices.shape}")
    return np.ascontiguousarray(np.transpose(np.flip(slices, (1, 2)), np.argsort(perm)))


def nonempty_slices(
    data: np.ndarray, view: str, min_fraction: float = 0.01, level: float = 0.1
) -> np.ndarray:
    """bool (S,): slices of `view` where at least `min_fraction` of the voxels exceed `level`
    of the volume's robust range (min to 99.5th percentile), i.e. slices showing anatomy."""
    axis = _check_view(view)[0]
    data = np.nan_to_num(np.asarray(data, np.float32), nan=0.0)
    lo, hi = float(data.min()), float(np.percentile(data, 99.5))
    if hi <= lo:
        return np.zeros(data.shape[axis], bool)
    foreground = data > lo + level * (hi - lo)
    others = tuple(a for a in range(3) if a != axis)
    return foreground.mean(axis=others) >= min_fraction
