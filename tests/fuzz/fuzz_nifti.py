"""Hostile NIfTI volumes: blank, NaN, zero-size, bombed headers, broken affines and datatypes."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from fuzz_base import InputCase, Writer, raw, rng, truncated

# ----------------------------------------------------------------------------- NIfTI


def nifti(
    data: np.ndarray, affine: np.ndarray | None = None, cls=nib.Nifti1Image
) -> nib.Nifti1Image:
    return cls(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine)


def phantom_volume(shape: tuple[int, int, int] = (20, 20, 3), seed: int = 0) -> np.ndarray:
    """A blob on noise: float32 (X, Y, Z) with non-empty axial slices."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    blob = (x**2 + y**2 + 0.2 * z**2 < 0.6).astype(np.float32) * 100
    return blob + rng(seed).random(shape, dtype=np.float32) * 10


def _nii(name: str, make: Callable[[], nib.Nifti1Image]) -> Writer:
    def write(folder: Path) -> Path:
        nib.save(make(), folder / name)
        return folder / name

    return write


def _sform_only(name: str, affine: np.ndarray) -> Writer:
    """A NIfTI whose only geometry is the sform `affine` (nibabel will not save a NaN or
    singular one, so the header bytes are edited: qform_code 0, sform_code 1, srow_x/y/z)."""

    def write(folder: Path) -> Path:
        path = folder / name
        nib.save(nifti(phantom_volume()), path)
        blob = bytearray(path.read_bytes())
        blob[252:256] = struct.pack("<hh", 0, 1)
        blob[280:328] = struct.pack("<12f", *np.asarray(affine, np.float32)[:3].ravel())
        path.write_bytes(bytes(blob))
        return path

    return write


def _nan_matrix() -> np.ndarray:
    aff = np.eye(4)
    aff[0, 0] = np.nan
    return aff


def _header_claim(name: str, shape: tuple[int, ...], nbytes: int = 64, gz: bool = False) -> Writer:
    """A NIfTI header claiming `shape` float32 voxels, followed by only `nbytes` of data."""

    def write(folder: Path) -> Path:
        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(np.float32)
        hdr.set_data_shape((1,) * len(shape))
        blob = bytearray(hdr.binaryblock)
        dims = [len(shape), *shape] + [1] * (7 - len(shape))
        blob[40:56] = struct.pack("<8h", *dims)
        body = bytes(blob) + b"\x00" * 4 + b"\x00" * nbytes  # 348 + extension flag + data
        data = gzip.compress(body) if gz else body
        (folder / name).write_bytes(data)
        return folder / name

    return write


def _qform_nan(folder: Path) -> Path:
    """Geometry from the qform only (sform_code 0), with NaN voxel sizes in pixdim."""
    path = folder / "qnan.nii"
    nib.save(nifti(phantom_volume()), path)
    blob = bytearray(path.read_bytes())
    blob[252:256] = struct.pack("<hh", 1, 0)
    blob[80:92] = struct.pack("<3f", *[float("nan")] * 3)
    path.write_bytes(bytes(blob))
    return path


def _raw_edit(name: str, offset: int, fmt: str, value) -> Writer:
    def write(folder: Path) -> Path:
        img = nifti(phantom_volume())
        path = folder / name
        img.to_filename(path)
        blob = bytearray(path.read_bytes())
        blob[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
        path.write_bytes(bytes(blob))
        return path

    return write


def _int16_with_slope(name: str, slope: float) -> Writer:
    def write(folder: Path) -> Path:
        img = nib.Nifti1Image(phantom_volume().astype(np.int16), np.eye(4))
        img.header["scl_slope"], img.header["scl_inter"] = slope, 0.0
        img.set_data_dtype(np.int16)
        path = folder / name
        nib.save(img, path)
        blob = bytearray(path.read_bytes())
        blob[112:116] = struct.pack("<f", slope)  # nibabel resets non-finite slopes on save
        path.write_bytes(bytes(blob))
        return path

    return write


def _complex(folder: Path) -> Path:
    img = nib.Nifti1Image(phantom_volume().astype(np.complex64), np.eye(4))
    nib.save(img, folder / "complex.nii")
    return folder / "complex.nii"


def _rgb_nifti(folder: Path) -> Path:
    rgb = np.zeros((12, 12, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), folder / "rgb.nii")
    return folder / "rgb.nii"


NIFTI_CASES: list[InputCase] = [
    InputCase(
        "nifti",
        "all-zero",
        _nii("zero.nii.gz", lambda: nifti(np.zeros((16, 16, 6), np.float32))),
        False,
        "constant",
    ),
    InputCase(
        "nifti",
        "all-nan",
        _nii("nan.nii.gz", lambda: nifti(np.full((16, 16, 6), np.nan, np.float32))),
        False,
    ),
    InputCase(
        "nifti",
        "constant",
        _nii("flat.nii", lambda: nifti(np.full((16, 16, 6), 42, np.float32))),
        False,
        "constant",
    ),
    InputCase("nifti", "zero-size-dim", _header_claim("z0.nii", (16, 0, 6), 0), False),
    InputCase("nifti", "nan-affine", _sform_only("nanaff.nii", _nan_matrix()), False, "affine"),
    InputCase(
        "nifti", "singular-affine", _sform_only("sing.nii", np.zeros((4, 4))), False, "affine"
    ),
    InputCase(
        "nifti",
        "parallel-axes",
        _sform_only(
            "par.nii", np.array([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        ),
        False,
        "affine",
    ),
    InputCase("nifti", "nan-pixdim-qform", _qform_nan, False, "affine"),
    InputCase(
        "nifti", "claims-2000-cubed", _header_claim("huge.nii", (2000, 2000, 2000)), False, "voxels"
    ),
    InputCase(
        "nifti",
        "claims-2000-cubed-gz",
        _header_claim("huge.nii.gz", (2000, 2000, 2000), gz=True),
        False,
        "voxels",
    ),
    InputCase(
        "nifti",
        "claims-more-than-file",
        _header_claim("short.nii", (64, 64, 64), 100),
        False,
        "short.nii",
    ),
    InputCase(
        "nifti",
        "4d-two-volumes",
        _nii("t4.nii.gz", lambda: nifti(np.zeros((8, 8, 4, 2), np.float32))),
        False,
        "4d",
    ),
    InputCase(
        "nifti",
        "5d",
        _nii("t5.nii.gz", lambda: nifti(np.zeros((8, 8, 4, 1, 3), np.float32))),
        False,
    ),
    InputCase("nifti", "complex-datatype", _complex, False, "complex"),
    InputCase("nifti", "rgb-datatype", _rgb_nifti, False, "rgb"),
    InputCase(
        "nifti", "unknown-datatype-code", _raw_edit("dt.nii", 70, "<h", 999), False, "dt.nii"
    ),
    InputCase("nifti", "negative-dim", _raw_edit("neg.nii", 42, "<h", -5), False, "neg.nii"),
    InputCase("nifti", "gzip-garbage", raw("junk.nii.gz", gzip.compress(b"garbage" * 99)), False),
    InputCase("nifti", "not-gzip", raw("plain.nii.gz", b"\x00" * 500), False),
    InputCase("nifti", "text", raw("notes.nii", b"this is not a volume\n" * 30), False),
    InputCase("nifti", "zero-byte", raw("void.nii", b""), False),
    InputCase(
        "nifti",
        "truncated-gz",
        truncated("cut.nii.gz", lambda: gzip.compress(nifti(phantom_volume()).to_bytes())),
        False,
    ),
    InputCase(
        "nifti",
        "in-plane-1x1",
        _nii("pencil.nii", lambda: nifti(rng().random((1, 1, 300), np.float32))),
        False,
        "small",
    ),
    InputCase("nifti", "nan-slope", _int16_with_slope("nslope.nii", float("nan")), True),
    InputCase("nifti", "inf-slope", _int16_with_slope("islope.nii", float("inf")), True),
    InputCase(
        "nifti",
        "inf-intercept",
        _raw_edit("iinter.nii", 116, "<f", float("inf")),
        False,
        "iinter.nii",
    ),
    # odd but valid
    InputCase("nifti", "2d", _nii("flat2d.nii", lambda: nifti(phantom_volume()[..., 0])), True),
    InputCase(
        "nifti", "4d-single", _nii("t41.nii.gz", lambda: nifti(phantom_volume()[..., None])), True
    ),
    InputCase(
        "nifti",
        "nifti2",
        _nii("v2.nii", lambda: nifti(phantom_volume(), cls=nib.Nifti2Image)),
        True,
    ),
    InputCase(
        "nifti",
        "partial-nan",
        _nii(
            "pnan.nii.gz", lambda: nifti(np.where(phantom_volume() > 50, np.nan, phantom_volume()))
        ),
        True,
    ),
    InputCase(
        "nifti", "huge-values", _nii("hv.nii.gz", lambda: nifti(phantom_volume() * 1e36)), True
    ),
    InputCase(
        "nifti", "one-slice", _nii("one.nii", lambda: nifti(phantom_volume((24, 24, 1)))), True
    ),
    InputCase(
        "nifti", "uint8", _nii("u8.nii", lambda: nifti(phantom_volume().astype(np.uint8))), True
    ),
]
