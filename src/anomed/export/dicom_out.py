"""DICOM results a viewer overlays on the scan: a Segmentation and a Parametric Map.

For a DICOM series input, `predict` writes its volume map as a NIfTI on the series' grid (see
`anomed.engine.volumes`). This module puts the same map back onto the *source instances*: for
each source image (single-frame, one series), every pixel's patient position (from its
ImagePositionPatient, ImageOrientationPatient and PixelSpacing) is looked up in the NIfTI map,
so frame i of the output lies exactly on source instance i whatever order, orientation or
axis flips the series was stored with. The objects reference the source instances and share
their Study, Frame of Reference and geometry (highdicom copies the patient and study modules):

- SEG (`<name>_seg.dcm`): a BINARY segment "anomaly", the voxels whose map value is above the
  calibrated threshold (the threshold is on image scores; for methods whose score is the map's
  maximum, a slice is abnormal exactly when its SEG frame is non-empty);
- PMAP (`<name>_pmap.dcm`): the anomaly map itself, float32, one frame per source instance.

Both are labelled RESEARCH content from an automatic algorithm (name, version, threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from anomed._version import __version__
from anomed.errors import AnomedError

KINDS = ("seg", "pmap", "both")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_GRID_TOLERANCE = 0.01  # voxels: a source pixel must fall on a map voxel centre
# Type 2 patient/study attributes (present, may be empty) that highdicom copies from the source;
# anonymised exports and phantoms often drop them.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")  # fmt: skip


@dataclass
class DicomOutputs:
    seg: Path | None = None
    pmap: Path | None = None
    note: str | None = None  # why an asked-for object was not written


def _import_highdicom():
    try:
        import highdicom
    except ImportError as exc:
        raise AnomedError(
            f"DICOM outputs need highdicom ({exc}). Fix: pip install 'anomed[export]'."
        ) from exc
    return highdicom


def source_instances(series: str | Path) -> list[pydicom.Dataset]:
    """The single-frame images of the one series at `series` (a folder or a file), sorted along
    the slice normal."""
    from anomed.data.dicom import _read_dicom_file, _series_datasets

    path = Path(series)
    if path.is_dir():
        datasets = [ds for _, ds in _series_datasets(path, None)]
    else:
        ds = _read_dicom_file(path)
        datasets = [] if ds is None else [ds]
    if not datasets:
        raise AnomedError(f"{series}: no DICOM images found")
    for ds in datasets:
        fill_type2(ds)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise AnomedError(
                f"{series}: DICOM outputs are written for series of single-frame images; this "
                "one is multi-frame (not supported yet). The NIfTI map is still written."
            )
        missing = [
            k
            for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
            if k not in ds
        ]
        if missing and not (len(datasets) == 1 and is_projection(ds)):
            raise AnomedError(
                f"{series}: an image lacks {', '.join(missing)}, so no DICOM object can be "
                "placed on the series. The NIfTI map is still written."
            )
    if len(datasets) == 1:
        return datasets
    normal = np.cross(*np.reshape(np.array(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(datasets, key=lambda ds: float(np.array(ds.ImagePositionPatient, float) @ normal))


def is_projection(ds: pydicom.Dataset) -> bool:
    """A lone 2D image without plane geometry (a radiograph: CR, DX, MG, ...). The volume
    reader places such an image axially at the origin; its map is read back the same way."""
    return "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds


def fill_type2(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Add the empty Type 2 patient/study attributes highdicom copies (in memory only: the
    source files are never changed)."""
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def pixel_positions(ds: pydicom.Dataset) -> np.ndarray:
    """Patient positions (R, C, 3) of every pixel centre of a single-frame image, in RAS mm
    (a projection image: where `read_volume` put it, axial at the origin)."""
    origin = np.array(ds.get("ImagePositionPatient", [0.0, 0.0, 0.0]), float)
    orientation = ds.get("ImageOrientationPatient", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    row_dir, col_dir = np.reshape(np.array(orientation, float), (2, 3))
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    d_row, d_col = (float(v) for v in spacing)  # between rows, between columns
    r, c = np.meshgrid(np.arange(int(ds.Rows)), np.arange(int(ds.Columns)), indexing="ij")
    lps = origin + c[..., None] * d_col * row_dir + r[..., None] * d_row * col_dir
    return lps @ _LPS_TO_RAS.T


def sample_on_instances(map_path: str | Path, instances: list[pydicom.Dataset]) -> np.ndarray:
    """The NIfTI map's values at every pixel of every source instance: (N, R, C) float32.

    Each pixel must fall on a voxel centre of the map (same grid: the map was written on this
    series' geometry); anything else is an AnomedError, never a silent resampling."""
    img = nib.load(str(map_path))
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
    to_voxel = np.linalg.inv(img.affine)
    frames = []
    for ds in instances:
        ras = pixel_positions(ds)
        vox = ras @ to_voxel[:3, :3].T + to_voxel[:3, 3]  # (R, C, 3)
        idx = np.rint(vox).astype(np.int64)
        off = float(np.abs(vox - idx).max())
        inside = all(
            (idx[..., a] >= 0).all() and (idx[..., a] < data.shape[a]).all() for a in range(3)
        )
        if off > _GRID_TOLERANCE or not inside:
            raise AnomedError(
                f"{map_path}: instance {ds.get('SOPInstanceUID', '?')} does not lie on the map's "
                f"grid (off by {off:.3g} voxels, inside: {inside}); the map was not made from "
                "this series."
            )
        frames.append(data[idx[..., 0], idx[..., 1], idx[..., 2]])
    return np.stack(frames).astype(np.float32)


def _common(instances: list[pydicom.Dataset], method: str, number: int) -> dict:
    hd = _import_highdicom()
    return {
        "source_images": instances,
        "series_instance_uid": hd.UID(),
        "series_number": int(instances[0].get("SeriesNumber", 0) or 0) + number,
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": "anomed",
        "manufacturer_model_name": f"anomed {method}"[:64],
        "software_versions": __version__,
        "device_serial_number": "0",
    }


def write_seg(
    instances: list[pydicom.Dataset], frames: np.ndarray, threshold: float, path: Path, method: str
) -> Path:
    """A BINARY Segmentation of `frames > threshold`, one frame per source instance."""
    hd = _import_highdicom()
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"anomed {method}"[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
        parameters={"threshold": f"{threshold:.6g}"},
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="anomaly",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Abnormal,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        pixel_array=(frames > threshold).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        omit_empty_frames=False,  # one frame per source instance, even where nothing is found
        content_label="ANOMALY",
        content_description=f"anomed {method}: anomaly map > {threshold:.4g}"[:64],
        **_common(instances, method, 1000),
    )
    seg.save_as(path)
    return path


def write_pmap(
    instances: list[pydicom.Dataset],
    frames: np.ndarray,
    path: Path,
    method: str,
    value_range: tuple[float | None, float | None] = (None, None),
) -> Path:
    """A float32 Parametric Map of the anomaly map, one frame per source instance; the window
    spans `value_range` (the calibrated heatmap range) when given, else the data's range."""
    hd = _import_highdicom()
    from pydicom.sr.codedict import codes

    lo = float(frames.min() if value_range[0] is None else value_range[0])
    hi = float(frames.max() if value_range[1] is None else value_range[1])
    hi = hi if hi > lo else lo + 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ANOMALY",
        lut_explanation=f"anomed {method} anomaly score"[:64],
        unit=codes.UCUM.NoUnits,
        value_range=(float(frames.min()), float(frames.max())),
        slope=1.0,
        intercept=0.0,
    )
    pmap = hd.pm.ParametricMap(
        pixel_array=np.ascontiguousarray(frames, np.float32),
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(window_center=(lo + hi) / 2, window_width=hi - lo)
        ],
        content_label="ANOMALY",
        content_description=f"anomed {method} anomaly map"[:64],
        **_common(instances, method, 1001),
    )
    pmap.save_as(path)
    return path


def write_dicom_outputs(
    series: str | Path,
    map_path: Path,
    kind: str,
    threshold: float | None,
    method: str,
    value_range: tuple[float | None, float | None] = (None, None),
) -> DicomOutputs:
    """SEG and/or PMAP (`kind`: seg, pmap or both) beside the NIfTI map `<name>_anomaly.nii.gz`
    as `<name>_seg.dcm` / `<name>_pmap.dcm`. Without a threshold no SEG is written (noted)."""
    if kind not in KINDS:
        raise AnomedError(f"--dicom-out {kind}: use one of {', '.join(KINDS)}")
    instances = source_instances(series)
    frames = sample_on_instances(map_path, instances)
    stem = map_path.name.removesuffix(".nii.gz").removesuffix(".nii").removesuffix("_anomaly")
    out = DicomOutputs()
    if kind in ("seg", "both"):
        if threshold is None:
            out.note = "no DICOM SEG: the checkpoint has no calibrated threshold"
        elif threshold < 0:  # unscored (empty) slices hold 0 in the map: they would count
            out.note = f"no DICOM SEG: the threshold {threshold:.4g} is below 0, the map's value "
            out.note += "on unscored slices"
        else:
            out.seg = write_seg(
                instances, frames, threshold, map_path.with_name(f"{stem}_seg.dcm"), method
            )
    if kind in ("pmap", "both") and is_projection(instances[0]):
        # highdicom 0.28 cannot build a Parametric Map without plane positions
        why = "no DICOM parametric map for a 2D image without plane geometry"
        out.note = f"{out.note}; {why}" if out.note else why
    elif kind in ("pmap", "both"):
        out.pmap = write_pmap(
            instances, frames, map_path.with_name(f"{stem}_pmap.dcm"), method, value_range
        )
    return out


def is_dicom_input(path: str | Path) -> bool:
    """A DICOM series folder or DICOM file (what `read_volume` reads as DICOM)."""
    from anomed.data.volumes import _looks_dicom

    path = Path(path)
    return path.is_dir() or _looks_dicom(path)


def dicom_row_fields(detector, source: Path, map_path: Path, out: Path, kind: str) -> dict:
    """predict's row fields for one volume: `dicom_seg` / `dicom_pmap` (paths relative to
    `out`), `dicom_note` (why nothing was written for a non-DICOM input or without a
    threshold) or, when writing failed, `error` (the scores stand; the row stays ok)."""
    if not is_dicom_input(source):
        return {"dicom_note": "not a DICOM series: no DICOM objects"}
    try:
        result = write_dicom_outputs(
            source, map_path, kind, detector.threshold, detector.info.run.method, detector.map_range
        )
    except AnomedError as exc:
        return {"error": f"DICOM outputs not written: {exc}"}
    except (ValueError, TypeError, AttributeError, KeyError, OSError) as exc:  # highdicom, disk
        return {"error": f"DICOM outputs not written: {type(exc).__name__}: {exc}"}
    fields = {"dicom_note": result.note} if result.note else {}
    for key, path in (("dicom_seg", result.seg), ("dicom_pmap", result.pmap)):
        if path is not None:
            fields[key] = str(path.relative_to(out))
    return fields
