"""Hostile DICOM files and series: unknown syntaxes, missing pixels, broken geometry/rescale."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from fuzz_base import InputCase, Writer, gray, rng
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

# ----------------------------------------------------------------------------- DICOM


def dicom_dataset(
    pixels: np.ndarray | None = None,
    z: float = 0.0,
    series: str = "1.2.826.0.1.3680043.8.498.1",
    number: int = 1,
    syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A minimal MR slice (uint16 pixels (R, C)) with geometry, in memory."""
    pixels = (gray(16, 20, seed=number) * 40).astype(np.uint16) if pixels is None else pixels
    meta = FileMetaDataset()
    sop = generate_uid(entropy_srcs=[series, str(number), str(z)])
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, sop
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series + ".9", series
    ds.Modality, ds.InstanceNumber = "MR", number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 2.0
    ds.PixelData = np.ascontiguousarray(pixels, "<u2").tobytes()
    return ds


def write_dicom(path: Path, ds: Dataset) -> Path:
    """Save `ds` as a DICOM file (unknown transfer syntaxes written explicit VR little endian;
    invalid values, e.g. text in a DS tag, written as they are)."""
    from pydicom import config

    path.parent.mkdir(parents=True, exist_ok=True)
    mode = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        known = ds.file_meta.TransferSyntaxUID.is_transfer_syntax
        extra = {} if known else {"implicit_vr": False, "little_endian": True}
        ds.save_as(path, enforce_file_format=True, **extra)
    finally:
        config.settings.writing_validation_mode = mode
    return path


def dicom_series(
    folder: Path,
    n: int = 3,
    edit: Callable[[Dataset, int], None] | None = None,
    series: str = "1.2.826.0.1.3680043.8.498.1",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ds = dicom_dataset(z=2.0 * k, number=k + 1, series=series)
        if edit is not None:
            edit(ds, k)
        write_dicom(folder / f"IM{k:03d}.dcm", ds)
    return folder


def _series(name: str, edit: Callable[[Dataset, int], None] | None = None, n: int = 3) -> Writer:
    return lambda folder: dicom_series(folder / name, n, edit)


def _set(**values) -> Callable[[Dataset, int], None]:
    def edit(ds: Dataset, k: int) -> None:
        from pydicom import config

        config.settings.writing_validation_mode = config.IGNORE  # restored by write_dicom
        for key, value in values.items():
            if key.startswith("meta_"):
                setattr(ds.file_meta, key[5:], value)
            elif value is None:
                if key in ds:
                    delattr(ds, key)
            else:
                setattr(ds, key, value)

    return edit


def _two_series(folder: Path) -> Path:
    target = folder / "mixed"
    dicom_series(target, 2, series="1.2.3.4.1")
    for k in range(2):
        write_dicom(
            target / f"B{k}.dcm", dicom_dataset(z=2.0 * k, number=k + 1, series="1.2.3.4.2")
        )
    return target


def _uneven(ds: Dataset, k: int) -> None:
    ds.ImagePositionPatient = [0.0, 0.0, [0.0, 1.0, 5.0, 5.5][k]]


def _sizes(ds: Dataset, k: int) -> None:
    if k == 1:
        px = np.zeros((10, 10), np.uint16)
        ds.Rows, ds.Columns, ds.PixelData = 10, 10, px.tobytes()


def _dup(ds: Dataset, k: int) -> None:
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]


def _short_pixels(ds: Dataset, k: int) -> None:
    ds.PixelData = ds.PixelData[:50]


def _claims_frames(ds: Dataset, k: int) -> None:
    ds.NumberOfFrames = 1_000_000
    ds.Rows, ds.Columns = 4096, 4096


def _colour(ds: Dataset, k: int) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(ds.Rows * ds.Columns * 3)


def _float_pixels(ds: Dataset, k: int) -> None:
    arr = rng(k).random((ds.Rows, ds.Columns)).astype(np.float32)
    arr[0, 0] = np.nan
    del ds.PixelData
    ds.BitsAllocated = 32
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.FloatPixelData = arr.tobytes()


def _const(ds: Dataset, k: int) -> None:
    ds.PixelData = np.full((ds.Rows, ds.Columns), 7, "<u2").tobytes()


def _compressed(syntax: str) -> Callable[[Dataset, int], None]:
    def edit(ds: Dataset, k: int) -> None:
        from pydicom.encaps import encapsulate

        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(200))])
        ds["PixelData"].VR = "OB"

    return edit


def _patched(write: Writer, old: bytes, new: bytes) -> Writer:
    """`write`, then `old` replaced by `new` in the bytes of every file it wrote."""

    def patched(folder: Path) -> Path:
        path = write(folder)
        for file in [path] if path.is_file() else sorted(path.iterdir()):
            file.write_bytes(file.read_bytes().replace(old, new))
        return path

    return patched


def _not_dicom_dcm(folder: Path) -> Path:
    (folder / "fake.dcm").write_bytes(b"\x00" * 128 + b"DICX" + b"junk" * 40)
    return folder / "fake.dcm"


def _truncated_dcm(folder: Path) -> Path:
    path = write_dicom(folder / "cut.dcm", dicom_dataset())
    path.write_bytes(path.read_bytes()[:300])
    return path


def _single(name: str, edit: Callable[[Dataset, int], None] | None = None) -> Writer:
    def write(folder: Path) -> Path:
        ds = dicom_dataset()
        if edit:
            edit(ds, 0)
        return write_dicom(folder / name, ds)

    return write


def _dicomdir_only(folder: Path) -> Path:
    target = folder / "dirs"
    ds = dicom_dataset()
    del ds.PixelData
    ds.DirectoryRecordSequence = []
    write_dicom(target / "DICOMDIR.dcm", ds)
    return target


DICOM_CASES: list[InputCase] = [
    InputCase(
        "dicom",
        "unknown-transfer-syntax",
        _series("tsx", _set(meta_TransferSyntaxUID="1.2.3.4.5.6.7")),
        False,
        "transfer syntax",
    ),
    InputCase(
        "dicom", "missing-pixel-data", _series("nopix", _set(PixelData=None)), False, "pixel data"
    ),
    InputCase("dicom", "two-series-one-folder", _two_series, False, "series"),
    InputCase(
        "dicom", "jpeg-without-decoder", _series("jpg", _compressed(JPEGBaseline8Bit)), False, "fix"
    ),
    InputCase(
        "dicom", "jpeg2000-garbage", _series("j2k", _compressed(JPEG2000Lossless)), False, "fix"
    ),
    InputCase("dicom", "rle-garbage", _series("rle", _compressed(RLELossless)), False, "fix"),
    InputCase("dicom", "slice-sizes-differ", _series("sizes", _sizes), False, "size"),
    InputCase("dicom", "duplicate-positions", _series("dup", _dup), False, "position"),
    InputCase("dicom", "short-pixel-data", _series("short", _short_pixels), False, "fix"),
    InputCase("dicom", "claims-1e6-frames", _single("frames.dcm", _claims_frames), False, "voxels"),
    InputCase("dicom", "rows-zero", _single("r0.dcm", _set(Rows=0)), False, "r0.dcm"),
    InputCase("dicom", "colour", _single("rgb.dcm", _colour), False, "colour"),
    InputCase(
        "dicom",
        "nan-position",
        _series("npos", _set(ImagePositionPatient=[0.0, float("nan"), 0.0])),
        False,
    ),
    InputCase(
        "dicom", "zero-spacing", _series("sp0", _set(PixelSpacing=[0.0, 0.0])), False, "spacing"
    ),
    InputCase(
        "dicom",
        "nan-spacing",
        _series("spn", _set(PixelSpacing=[float("nan"), 1.0])),
        False,
        "spacing",
    ),
    InputCase(
        "dicom",
        "zero-orientation",
        _series("or0", _set(ImageOrientationPatient=[0.0] * 6)),
        False,
        "orientation",
    ),
    InputCase(
        "dicom",
        "short-orientation",
        _series("or5", _set(ImageOrientationPatient=[1.0, 0, 0, 0, 1])),
        False,
        "orientation",
    ),
    InputCase(
        "dicom",
        "slope-text",
        _patched(_series("slt", _set(RescaleSlope="12345678")), b"12345678", b"abc     "),
        False,
        "rescale",
    ),
    InputCase(
        "dicom",
        "slope-garbage-bytes",
        _patched(_series("slg", _set(RescaleSlope="12345678")), b"12345678", b"1e999999"),
        False,
        "rescale",
    ),
    InputCase(
        "dicom", "slope-nan", _series("sln", _set(RescaleSlope=float("nan"))), False, "rescale"
    ),
    InputCase("dicom", "constant", _series("flat", _const), False, "constant"),
    InputCase("dicom", "not-dicom-dcm", _not_dicom_dcm, False, "fake.dcm"),
    InputCase("dicom", "truncated-file", _truncated_dcm, False, "cut.dcm"),
    InputCase("dicom", "dicomdir-only", _dicomdir_only, False, "dirs"),
    InputCase(
        "dicom", "bits-allocated-12", _single("b12.dcm", _set(BitsAllocated=12)), False, "b12.dcm"
    ),
    InputCase("dicom", "float-pixels-with-nan", _single("fl.dcm", _float_pixels), True),
    # odd but valid
    InputCase("dicom", "one-slice-file", _single("one.dcm"), True),
    InputCase("dicom", "one-slice-folder", _series("single", n=1), True),
    InputCase("dicom", "uneven-spacing", _series("uneven", _uneven, n=4), True),
    InputCase(
        "dicom",
        "no-geometry",
        _series("nogeo", _set(ImagePositionPatient=None, ImageOrientationPatient=None)),
        True,
    ),
    InputCase(
        "dicom",
        "nan-window",
        _series("wnan", _set(WindowCenter=float("nan"), WindowWidth=400.0)),
        True,
    ),
    InputCase(
        "dicom", "zero-window", _series("w0", _set(WindowCenter=100.0, WindowWidth=0.0)), True
    ),
    InputCase("dicom", "frames-zero", _single("f0.dcm", _set(NumberOfFrames=0)), True),
]
