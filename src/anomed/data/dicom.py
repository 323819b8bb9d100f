"""Read DICOM volumes: single- and multi-frame files and series folders, into a `Volume`.

DICOM intensities are in modality units (Modality LUT Sequence, else RescaleSlope/Intercept)
and always "higher = brighter": MONOCHROME1 images (low values displayed white, e.g. CR/DX
films) are mirrored about the volume's value range, v -> min + max - v, and their header window
centre with them, so windowing the result equals the inverse of windowing the stored image.

Slices are stacked in the file's (column, row, slice) order with an LPS -> RAS affine, then
reoriented to canonical RAS+ like every volume (see `anomed.data.volumes`).

Every header value is checked before it is used: a size claim above the voxel limit is refused
before any pixel is decoded, geometry (position, orientation, spacing) and rescale values must be
finite, and a non-finite or non-positive display window is ignored (percentiles are used). A file
pydicom cannot parse, in any way, is one `AnomedError` naming it.
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

from anomed.data.geometry import (
    DICOM_SUFFIXES,
    Volume,
    canonical,
    check_exists,
    check_voxels,
    reason,
    walk_files,
)
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
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on hostile bytes
        raise AnomedError(
            f"{path}: DICOM file is truncated or corrupt ({reason(exc)}). "
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
        if syntax is not None and not syntax.is_transfer_syntax:
            fix = "the transfer syntax is unknown; re-export the series uncompressed"
        elif syntax is not None and syntax.is_compressed:
            fix = (
                "install a decoder (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) "
                "or decompress with `gdcmconv --raw`"
            )
        else:
            fix = "the file is truncated or corrupt; re-export the series or remove it"
        raise AnomedError(
            f"{path}: cannot decode DICOM pixel data, transfer syntax {syntax} "
            f"({reason(exc)}). Fix: {fix}."
        ) from exc
    return pixels.reshape(-1, *pixels.shape[-2:])


def _modality(path: Path, ds: pydicom.Dataset, frame: int, pixels: np.ndarray) -> np.ndarray:
    """Stored values (R, C) -> modality units (HU, ...) float32: the Modality LUT Sequence
    (pydicom's `apply_modality_lut`) if present, else the frame's RescaleSlope/Intercept
    (functional groups first, which pydicom's helper does not read)."""
    if ds.get("ModalityLUTSequence") and pixels.dtype.kind in "iu":
        try:  # int64: pydicom subtracts the LUT's first mapped value in the input dtype
            return apply_modality_lut(pixels.astype(np.int64), ds).astype(np.float32)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise AnomedError(
                f"{path}: invalid Modality LUT Sequence ({reason(exc)}). "
                "Fix: re-export the image with a valid LUT or with RescaleSlope/Intercept."
            ) from exc
    slope = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    inter = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    slope = 1.0 if slope is None else _number(slope)
    inter = 0.0 if inter is None else _number(inter)
    if slope is None or inter is None or slope == 0:
        raise AnomedError(
            f"{path}: RescaleSlope/RescaleIntercept are not usable numbers "
            f"({ds.get('RescaleSlope')!r}, {ds.get('RescaleIntercept')!r}), so pixel values "
            "cannot be put in modality units. Fix: correct the rescale tags or re-export."
        )
    return (pixels.astype(np.float64) * slope + inter).astype(np.float32)


def _number(value: Any) -> float | None:
    """A finite float from a DICOM DS/IS value, else None (text, NaN, Inf, empty)."""
    try:
        out = float(_first(value))
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) else None


def _vector(path: Path, value: Any, n: int, tag: str) -> np.ndarray | None:
    """`value` as n finite floats, None when absent; anything else is an AnomedError."""
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError) as exc:
        raise AnomedError(
            f"{path}: {tag} {value!r} is not {n} numbers. Fix: correct the tag or re-export."
        ) from exc
    if out.shape != (n,) or not np.isfinite(out).all():
        raise AnomedError(
            f"{path}: {tag} {list(value)!r} is not {n} finite numbers, so the slice "
            "geometry is unknown. Fix: correct the tag or re-export the series."
        )
    return out


def _orientation(path: Path, value: Any) -> np.ndarray | None:
    """ImageOrientationPatient: two non-zero, non-parallel direction vectors."""
    orient = _vector(path, value, 6, "ImageOrientationPatient")
    if orient is not None:
        row, col = orient[:3], orient[3:]
        if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-6 or (
            np.linalg.norm(np.cross(row, col)) < 1e-6 * np.linalg.norm(row) * np.linalg.norm(col)
        ):
            raise AnomedError(
                f"{path}: ImageOrientationPatient {list(value)!r} gives no plane (a zero or "
                "repeated direction), so the slice orientation is unknown. Fix: correct the "
                "tag or re-export the series."
            )
    return orient


def _spacing(path: Path, ds: pydicom.Dataset, value: Any) -> tuple[float, float]:
    """PixelSpacing (else ImagerPixelSpacing, else 1 mm): two finite, positive numbers."""
    value = value or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    spacing = _vector(path, value, 2, "PixelSpacing")
    if spacing is None or (spacing <= 0).any():
        raise AnomedError(
            f"{path}: PixelSpacing {list(value)!r} must be two positive numbers. Fix: correct "
            "the tag or re-export the series."
        )
    return float(spacing[0]), float(spacing[1])


def _window(center: Any, width: Any) -> tuple[float, float] | None:
    """The header window (centre, width) when both are finite and the width positive."""
    c, w = _number(center), _number(width)
    return None if c is None or w is None or w <= 0 else (c, w)


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
        number = _number(ds.get("InstanceNumber")) if len(frames) == 1 else k + 1
        step = _number(step)
        out.append(
            _Slice(
                pixels=_modality(path, ds, k, pixels),
                position=_vector(path, pos, 3, "ImagePositionPatient"),
                orientation=_orientation(path, orient),
                spacing=_spacing(path, ds, spacing),
                thickness=step if step and step > 0 else None,
                number=None if number is None else int(number),
                window=_window(center, width),
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
        if len(slices) > 1:  # a single film (CR/DX) has no slice order to get wrong
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
    unmarked: list[Path] = []  # named .dcm but no DICOM marker
    for path in walk_files(folder):
        ds = _read_dicom_file(path)
        if ds is None and path.name.lower().endswith(DICOM_SUFFIXES):
            unmarked.append(path)
        if ds is not None and "DirectoryRecordSequence" not in ds:  # skip DICOMDIR
            groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if not groups:
        named = (
            f" ({len(unmarked)} files named like DICOM lack it, e.g. {unmarked[0].name})"
            if unmarked
            else ""
        )
        raise AnomedError(
            f"{folder}: no DICOM files found (files with the 'DICM' marker){named}. "
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


def _frame_count(ds: pydicom.Dataset) -> int:
    value = _number(ds.get("NumberOfFrames", 1))
    return 1 if value is None or value < 1 else int(value)


def _check_claimed_size(path: Path, datasets: list[tuple[Path, pydicom.Dataset]]) -> None:
    """Rows x Columns x frames of the whole series, checked before any pixel is decoded."""
    rows = [_number(ds.get("Rows", 0)) or 0 for _, ds in datasets]
    cols = [_number(ds.get("Columns", 0)) or 0 for _, ds in datasets]
    frames = sum(_frame_count(ds) for _, ds in datasets)
    if max(rows) * max(cols) * frames > 0:  # zero sizes are reported by the decoder
        check_voxels(path, (int(max(cols)), int(max(rows)), frames))


def _guarded_slices(path: Path, ds: pydicom.Dataset) -> list[_Slice]:
    """`_slices_of`, with pydicom's lazy value parsing errors turned into one AnomedError."""
    try:
        return _slices_of(path, ds)
    except AnomedError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile header values fail deep inside pydicom
        raise AnomedError(
            f"{path}: unreadable DICOM header values ({reason(exc)}). Fix: re-export the "
            "series or remove the file."
        ) from exc


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a DICOM volume: a multi-frame or single-slice file, or a folder (searched
    recursively; non-DICOM files ignored) holding one series, or `series_uid` among several.

    Slices are sorted by ImagePositionPatient along the slice normal (else InstanceNumber),
    mapped by the Modality LUT (else RescaleSlope/Intercept), MONOCHROME1 ones inverted (see
    the module docstring), and placed with an LPS -> RAS affine built from
    ImagePositionPatient, ImageOrientationPatient, PixelSpacing and the slice step."""
    path = Path(path)
    check_exists(path)
    try:
        return _read_series(path, series_uid)
    except AnomedError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom parses values lazily, on first access
        raise AnomedError(
            f"{path}: unreadable DICOM header values ({reason(exc)}). Fix: re-export the "
            "series or remove the damaged file."
        ) from exc


def _read_series(path: Path, series_uid: str | None) -> Volume:
    if path.is_dir():
        datasets = _series_datasets(path, series_uid)
    else:
        ds = _read_dicom_file(path)
        if ds is None:
            raise AnomedError(f"{path}: not a DICOM file (no 'DICM' marker). Fix: check the path.")
        datasets = [(path, ds)]
    if len(datasets) > 1 and any(_frame_count(d) > 1 for _, d in datasets):
        raise AnomedError(f"{path}: a series of several multi-frame files. Fix: pass one file.")
    _check_claimed_size(path, datasets)
    slices = [s for f, ds in datasets for s in _guarded_slices(f, ds)]
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
    return canonical(args, arr, affine)
