"""Read DICOM volumes: single- and multi-frame files and series folders, into a `Volume`.

DICOM intensities are in modality units (Modality LUT Sequence, else RescaleSlope/Intercept)
and always "higher = brighter": MONOCHROME1 images (low values displayed white, e.g. CR/DX
films) are mirrored about the volume's value range, v -> min + max - v, and their header window
centre with them, so windowing the result equals the inverse of windowing the stored image.

Slices are stacked in the file's (column, row, slice) order with an LPS -> RAS affine, then
reoriented to canonical RAS+ like every volume (see `anomed.data.volumes`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from anomed.data.volumes import Volume, _canonical, _check_exists, _reason, _walk_files
from anomed.errors import AnomedError

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_AXIAL = np.array([1.0, 0, 0, 0, 1, 0])  # ImageOrientationPatient of an axial slice
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class _Slice:
    """One 2D frame of a DICOM series, rescaled, with its geometry."""

    pixels: np.ndarray  # (R, C) float32 after the Modality LUT or RescaleSlope / Intercept
    position: np.ndarray | None  # (3,) ImagePositionPatient, LPS mm
    orientation: np.ndarray | None  # (6,) row then column direction cosines, LPS
    spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns) mm
    thickness: float | None  # SpacingBetweenSlices, else SliceThickness
    number: int | None  # InstanceNumber (frame number within a multi-frame file)
    window: tuple[float, float] | None
    inverted: bool = False  # MONOCHROME1: low values displayed white


def _first(value: Any) -> Any:
    """The first item of a DICOM multi-value, or the value itself."""
    return value[0] if isinstance(value, pydicom.multival.MultiValue) else value


def _frame_value(ds: pydicom.Dataset, frame: int, seq: str, keyword: str) -> Any:
    """`keyword` for one frame: from the per-frame, then shared functional group `seq`
    (enhanced multi-frame files), else the top-level attribute; None when absent."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = [per[frame]] if per is not None and frame < len(per) else []
    groups += [shared[0]] if shared else []
    for group in groups:
        items = group.get(seq)
        if items and keyword in items[0]:
            return items[0][keyword].value
    return ds[keyword].value if keyword in ds else None


def _read_dicom_file(path: Path) -> pydicom.Dataset | None:
    """The dataset, or None when the file is not DICOM; a broken DICOM file is an error."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        return None
    except (OSError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise AnomedError(
            f"{path}: DICOM file is truncated or corrupt ({_reason(exc)}). "
            "Fix: re-export the series or remove the file."
        ) from exc


def _frames(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    """Decoded pixels (F, R, C) of one file."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise AnomedError(
            f"{path}: DICOM file has no pixel data (a report, presentation state or DICOMDIR?). "
            "Fix: point at the image files of one series."
        )
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise AnomedError(f"{path}: colour DICOM is not a scan volume. Fix: pass a greyscale one.")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # decoder plugins raise many types
        syntax = ds.file_meta.get("TransferSyntaxUID")
        fix = (
            "install a decoder (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) or "
            "decompress with `gdcmconv --raw`"
            if syntax is not None and syntax.is_compressed
            else "the file is truncated or corrupt; re-export the series or remove it"
        )
        raise AnomedError(
            f"{path}: cannot decode DICOM pixel data, transfer syntax {syntax} "
            f"({_reason(exc)}). Fix: {fix}."
        ) from exc
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return pixels.reshape(n, *pixels.shape[-2:])


def _modality(path: Path, ds: pydicom.Dataset, frame: int, pixels: np.ndarray) -> np.ndarray:
    """Stored values (R, C) -> modality units (HU, ...) float32: the Modality LUT Sequence
    (pydicom's `apply_modality_lut`) if present, else the frame's RescaleSlope/Intercept
    (functional groups first, which pydicom's helper does not read)."""
    if ds.get("ModalityLUTSequence") and pixels.dtype.kind in "iu":
        try:  # int64: pydicom subtracts the LUT's first mapped value in the input dtype
            return apply_modality_lut(pixels.astype(np.int64), ds).astype(np.float32)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise AnomedError(
                f"{path}: invalid Modality LUT Sequence ({_reason(exc)}). "
                "Fix: re-export the image with a valid LUT or with RescaleSlope/Intercept."
            ) from exc
    slope = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    inter = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    scaled = pixels.astype(np.float64) * float(1.0 if slope is None else slope)
    return (scaled + float(inter or 0.0)).astype(np.float32)


def _slices_of(path: Path, ds: pydicom.Dataset) -> list[_Slice]:
    frames, out = _frames(path, ds), []
    inverted = str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
    for k, pixels in enumerate(frames):
        pos = _frame_value(ds, k, "PlanePositionSequence", "ImagePositionPatient")
        orient = _frame_value(ds, k, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _frame_value(ds, k, "PixelMeasuresSequence", "PixelSpacing")
        step = _frame_value(ds, k, "PixelMeasuresSequence", "SpacingBetweenSlices")
        step = step or _frame_value(ds, k, "PixelMeasuresSequence", "SliceThickness")
        center = _frame_value(ds, k, "FrameVOILUTSequence", "WindowCenter")
        width = _frame_value(ds, k, "FrameVOILUTSequence", "WindowWidth")
        number = ds.get("InstanceNumber") if len(frames) == 1 else k + 1
        win = None if center is None or width is None else (_first(center), _first(width))
        out.append(
            _Slice(
                pixels=_modality(path, ds, k, pixels),
                position=None if pos is None else np.array(pos, np.float64),
                orientation=None if orient is None else np.array(orient, np.float64),
                spacing=tuple(float(s) for s in (spacing or ds.get("ImagerPixelSpacing", [1, 1]))),
                thickness=float(step) if step else None,
                number=None if number is None else int(number),
                window=None if win is None else (float(win[0]), float(win[1])),
                inverted=inverted,
            )
        )
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if len(out) > 1 and not (per and "PlanePositionSequence" in per[0]):
        _spread_frames(out)
    return out


def _invert_monochrome1(slices: list[_Slice]) -> None:
    """Make MONOCHROME1 slices "higher = brighter": v -> min + max - v over the whole
    series' values (so one volume keeps one intensity scale) and the window centre likewise.
    Mirroring the centre makes window(inverted) == 1 - window(stored): the header window still
    selects the same tissue, as when a viewer windows first and inverts after."""
    if not any(s.inverted for s in slices):
        return
    pivot = min(float(np.nanmin(s.pixels)) for s in slices)
    pivot += max(float(np.nanmax(s.pixels)) for s in slices)
    for s in (s for s in slices if s.inverted):
        s.pixels = (np.float32(pivot) - s.pixels).astype(np.float32)
        s.window = None if s.window is None else (pivot - s.window[0], s.window[1])
        s.inverted = False


def _spread_frames(slices: list[_Slice]) -> None:
    """A legacy multi-frame file gives one position for all its frames: place frame k at
    k slice thicknesses along the normal."""
    first = slices[0]
    if first.position is None:
        return
    orient = _AXIAL if first.orientation is None else first.orientation
    normal, origin = np.cross(orient[:3], orient[3:]), first.position
    for k, s in enumerate(slices):
        s.position = origin + k * (s.thickness or 1.0) * normal


def _order(slices: list[_Slice], source: Path) -> tuple[list[_Slice], np.ndarray]:
    """Slices sorted along the slice normal (else by InstanceNumber) and the normal (3,)."""
    orients = [s.orientation for s in slices]
    if any(o is None for o in orients):
        warnings.warn(f"{source}: no ImageOrientationPatient; assuming axial.", stacklevel=3)
        orient = _AXIAL
    else:
        orient = orients[0]
        if not all(np.allclose(o, orient, atol=1e-3) for o in orients):
            raise AnomedError(
                f"{source}: the slices have different orientations (a localizer series?). "
                "Fix: point at a series of parallel slices."
            )
    normal = np.cross(orient[:3], orient[3:])
    if all(s.position is not None for s in slices):
        keys = [float(s.position @ normal) for s in slices]
    elif all(s.number is not None for s in slices):
        keys = [float(s.number) for s in slices]
    else:
        keys = list(range(len(slices)))
    order = np.argsort(keys, kind="stable")
    return [slices[i] for i in order], normal


def _slice_step(slices: list[_Slice], normal: np.ndarray, source: Path) -> np.ndarray:
    """World (LPS) vector from one slice to the next."""
    if len(slices) < 2 or any(s.position is None for s in slices):
        return normal * (slices[0].thickness or 1.0)
    gaps = np.diff([float(s.position @ normal) for s in slices])
    if gaps.min() < 1e-3:
        raise AnomedError(
            f"{source}: several slices share one position, so the series holds more than one "
            "volume (echoes, time points, b-values). Fix: split it, e.g. with dcm2niix, and "
            "pass one volume."
        )
    if gaps.max() - gaps.min() > 0.1 * np.median(gaps):
        gap_range = f"{gaps.min():.3g}-{gaps.max():.3g} mm"
        warnings.warn(f"{source}: uneven slice gaps {gap_range}; using the mean.", stacklevel=3)
    return (slices[-1].position - slices[0].position) / (len(slices) - 1)


def _assemble(slices: list[_Slice], source: Path) -> tuple[np.ndarray, np.ndarray, _Slice]:
    """Stack slices into (C, R, S); return it, its RAS affine and the first sorted slice."""
    if len({s.pixels.shape for s in slices}) > 1:
        raise AnomedError(f"{source}: the slices differ in size. Fix: pass one series.")
    slices, normal = _order(slices, source)
    first = slices[0]
    orient = _AXIAL if first.orientation is None else first.orientation
    lps = np.eye(4)
    lps[:3, 0] = orient[:3] * first.spacing[1]  # along a row: column index, column spacing
    lps[:3, 1] = orient[3:] * first.spacing[0]  # down a column: row index, row spacing
    lps[:3, 2] = _slice_step(slices, normal, source)
    lps[:3, 3] = np.zeros(3) if first.position is None else first.position
    arr = np.stack([s.pixels for s in slices]).transpose(2, 1, 0)  # (S, R, C) -> (C, R, S)
    return arr, _LPS_TO_RAS @ lps, first


def _series_datasets(folder: Path, series_uid: str | None) -> list[tuple[Path, pydicom.Dataset]]:
    """The (file, dataset) pairs of the one series in `folder` (or of `series_uid`)."""
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in _walk_files(folder):
        ds = _read_dicom_file(path)
        if ds is not None and "DirectoryRecordSequence" not in ds:  # skip DICOMDIR
            groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if not groups:
        raise AnomedError(
            f"{folder}: no DICOM files found (files with the 'DICM' marker). "
            "Fix: point at a folder of DICOM slices, a .dcm file or a .nii/.nii.gz file."
        )
    if series_uid is not None and series_uid in groups:
        return groups[series_uid]
    if series_uid is None and len(groups) == 1:
        return next(iter(groups.values()))
    listing = "; ".join(
        f"{uid or '(no SeriesInstanceUID)'} {str(items[0][1].get('SeriesDescription', ''))!r} "
        f"({len(items)} files, e.g. {items[0][0].relative_to(folder)})"
        for uid, items in list(groups.items())[:10]
    )
    what = f"has no series {series_uid!r}" if series_uid else f"holds {len(groups)} series"
    raise AnomedError(
        f"{folder}: {what}: {listing}. Fix: point at one series' folder or pass series_uid=."
    )


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a DICOM volume: a multi-frame or single-slice file, or a folder (searched
    recursively; non-DICOM files ignored) holding one series, or `series_uid` among several.

    Slices are sorted by ImagePositionPatient along the slice normal (else InstanceNumber),
    mapped by the Modality LUT (else RescaleSlope/Intercept), MONOCHROME1 ones inverted (see
    the module docstring), and placed with an LPS -> RAS affine built from
    ImagePositionPatient, ImageOrientationPatient, PixelSpacing and the slice step."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        datasets = _series_datasets(path, series_uid)
    else:
        ds = _read_dicom_file(path)
        if ds is None:
            raise AnomedError(f"{path}: not a DICOM file (no 'DICM' marker). Fix: check the path.")
        datasets = [(path, ds)]
    if len(datasets) > 1 and any(int(d.get("NumberOfFrames", 1) or 1) > 1 for _, d in datasets):
        raise AnomedError(f"{path}: a series of several multi-frame files. Fix: pass one file.")
    slices = [s for f, ds in datasets for s in _slices_of(f, ds)]
    _invert_monochrome1(slices)
    arr, affine, first = _assemble(slices, path)
    ds = datasets[0][1]
    args = dict(
        source_shape=arr.shape,
        path=path,
        kind="dicom",
        modality=str(ds.get("Modality", "")),
        window=first.window,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
    )
    return _canonical(args, arr, affine)
