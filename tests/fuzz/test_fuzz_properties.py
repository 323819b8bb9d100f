"""Property-based tests: the readers and the config parser either return what they promise or
raise `AnomedError` - never another exception, never NaN, never a hang.

Each property runs twice: a few derandomized examples in the default suite (profile "fuzz",
tests/fuzz/conftest.py) and many random ones in the slow suite.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fuzz_corpus import dicom_dataset, gray, nifti, phantom_volume, write_dicom
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag

from anomed.config import RunConfig, apply_overrides, from_dict, load_yaml, to_dict
from anomed.data.dicom import read_dicom_series
from anomed.data.io import read_image, read_mask
from anomed.data.volumes import read_nifti
from anomed.errors import AnomedError

DEEP = int(os.environ.get("ANOMED_FUZZ_EXAMPLES", "300"))  # per property in the slow suite
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom: invalid DS values
logging.getLogger("pydicom").setLevel(logging.ERROR)


def twice(strategy: st.SearchStrategy, deep: int = DEEP) -> Callable:
    """Decorate `check(value)` into (quick test, slow deep test) over `strategy`."""

    def make(check: Callable) -> tuple[Callable, Callable]:
        def quick(value):  # noqa: ANN001
            check(value)

        def slow(value):  # noqa: ANN001
            check(value)

        quick_test = given(strategy)(quick)
        slow_test = pytest.mark.slow(settings(max_examples=deep)(given(strategy)(slow)))
        return quick_test, slow_test

    return make


def outcome(read: Callable, path: Path):  # noqa: ANN201
    """`read(path)`, or None when it raised AnomedError (any other exception propagates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read(path)
        except AnomedError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip("\n")[:0]
            return None


# ----------------------------------------------------------------------------- 2D images

SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, -1e30, 1e30, 0.5])


@st.composite
def pillow_images(draw) -> tuple[str, bytes]:
    """(suffix, file bytes) of an image Pillow writes: any mode, size and value range."""
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["L", "RGB", "RGBA", "LA", "I;16", "I", "F", "1", "P"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "F":
        arr = rng.normal(0, draw(st.sampled_from([1.0, 1e3, 1e-3])), (h, w)).astype(np.float32)
        if draw(st.booleans()):
            arr.flat[draw(st.integers(0, arr.size - 1))] = draw(SPECIAL)
        img = Image.fromarray(arr, mode="F")
    elif kind in ("I;16", "I"):
        dtype = np.uint16 if kind == "I;16" else np.int32
        hi = draw(st.sampled_from([1, 255, 4095, 65535]))
        img = Image.fromarray(rng.integers(0, hi + 1, (h, w)).astype(dtype))
    else:
        channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2, "1": 1, "P": 1}[kind]
        arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        img = Image.fromarray(arr[..., 0] if channels == 1 else arr)
        if kind in ("1", "P"):
            img = img.convert(kind)
    fmt = draw(st.sampled_from(["PNG", "TIFF", "BMP", "JPEG"]))
    if fmt in ("BMP", "JPEG") and img.mode not in ("L", "RGB", "1", "P"):
        fmt = "TIFF"
    if fmt == "PNG" and img.mode in ("F", "I"):
        fmt = "TIFF"
    if fmt == "JPEG" and img.mode in ("1", "P"):
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return {"PNG": ".png", "TIFF": ".tiff", "BMP": ".bmp", "JPEG": ".jpg"}[fmt], buf.getvalue()


@st.composite
def mutated(draw, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A valid file with bytes flipped, inserted, cut or a header field set to extremes."""
    suffix, data = draw(st.sampled_from(seeds))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "word"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:pos]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "word" and len(data) >= pos + 4:
            data[pos : pos + 4] = struct.pack(">I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1])))
    return suffix, bytes(data)


def _seed_images() -> list[tuple[str, bytes]]:
    out = []
    for fmt, suffix in (("PNG", ".png"), ("TIFF", ".tiff"), ("BMP", ".bmp"), ("JPEG", ".jpg")):
        buf = io.BytesIO()
        Image.fromarray(gray(20, 16)).save(buf, format=fmt)
        out.append((suffix, buf.getvalue()))
    return out


def _written(suffix: str, data: bytes, folder: str) -> Path:
    path = Path(folder) / f"x{suffix}"
    path.write_bytes(data)
    return path


def check_image_file(item: tuple[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _written(*item, folder)
        image = outcome(read_image, path)
        if image is not None:
            assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
            assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
        mask = outcome(read_mask, [path])
        if mask is not None:
            assert mask.dtype == np.bool_ and mask.ndim == 2


test_read_image_any_pillow_file, test_read_image_any_pillow_file_deep = twice(pillow_images())(
    check_image_file
)
test_read_image_mutated_file, test_read_image_mutated_file_deep = twice(mutated(_seed_images()))(
    check_image_file
)


# ----------------------------------------------------------------------------- NIfTI

DTYPE_CODES = [2, 4, 8, 16, 64, 256, 512, 768, 32, 128, 2304, 0, 1, 999, -1]
FLOATS = st.one_of(
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-30, 1e30]),
    st.floats(-1e3, 1e3, allow_nan=False),
)


@st.composite
def nifti_files(draw) -> tuple[str, bytes]:
    """A NIfTI-1 header with any dims, datatype, voxel sizes, xforms and scaling, followed by
    some (maybe too few) voxel bytes; gzipped or not."""
    hdr = bytearray(nib.Nifti1Header().binaryblock)
    ndim = draw(st.integers(0, 8))
    dims = [draw(st.sampled_from([1, 2, 3, 5, 8, 0, -3, 2000, 32767])) for _ in range(7)]
    struct.pack_into("<8h", hdr, 40, ndim, *dims)
    struct.pack_into("<h", hdr, 70, draw(st.sampled_from(DTYPE_CODES)))
    struct.pack_into("<8f", hdr, 76, *[draw(FLOATS) for _ in range(8)])  # pixdim
    struct.pack_into("<f", hdr, 108, draw(st.sampled_from([352.0, 0.0, 348.0, 1e9])))
    struct.pack_into("<ff", hdr, 112, draw(FLOATS), draw(FLOATS))  # scl_slope, scl_inter
    struct.pack_into("<hh", hdr, 252, draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    struct.pack_into("<6f", hdr, 256, *[draw(FLOATS) for _ in range(6)])  # quatern, offsets
    struct.pack_into("<12f", hdr, 280, *[draw(FLOATS) for _ in range(12)])  # srow
    body = bytes(hdr) + b"\x00" * 4 + draw(st.binary(max_size=2048))
    gz = draw(st.booleans())
    return (".nii.gz", gzip.compress(body)) if gz else (".nii", body)


def _seed_niftis() -> list[tuple[str, bytes]]:
    data = nifti(phantom_volume()).to_bytes()
    return [(".nii", data), (".nii.gz", gzip.compress(data))]


def check_nifti(item: tuple[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        volume = outcome(read_nifti, _written(*item, folder))
        if volume is not None:
            assert volume.data.ndim == 3 and volume.data.dtype == np.float32
            assert np.isfinite(volume.data).all() and np.isfinite(volume.affine).all()


test_read_nifti_any_header, test_read_nifti_any_header_deep = twice(nifti_files())(check_nifti)
test_read_nifti_mutated, test_read_nifti_mutated_deep = twice(mutated(_seed_niftis()))(check_nifti)


# ----------------------------------------------------------------------------- DICOM

SYNTAXES = [
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.4.50",  # JPEG baseline (no decoder for garbage)
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.3.4.5.6",  # unknown
]
DS_VALUES = st.one_of(FLOATS, st.sampled_from(["abc", "", "1e999", "nan", "-0", "1e-999"]))
TEXT_TAGS = {  # DS tags read as numbers -> how many values they hold
    "RescaleSlope": 1,
    "RescaleIntercept": 1,
    "WindowCenter": 1,
    "WindowWidth": 1,
    "SliceThickness": 1,
    "ImagePositionPatient": 3,
    "ImageOrientationPatient": 6,
    "PixelSpacing": 2,
}


@st.composite
def dicom_files(draw) -> tuple[str, bytes]:
    """A DICOM slice with any image-pixel module, geometry, rescale and window values."""
    rows, cols = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    ds = dicom_dataset(np.zeros((max(rows, 1), max(cols, 1)), np.uint16))
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = draw(st.sampled_from([1, 8, 16, 32, 12]))
    ds.BitsStored = draw(st.sampled_from([1, 8, 12, 16, 32]))
    ds.HighBit = max(0, ds.BitsStored - 1)
    ds.PixelRepresentation = draw(st.integers(0, 1))
    ds.SamplesPerPixel = draw(st.sampled_from([1, 3]))
    ds.PhotometricInterpretation = draw(st.sampled_from(["MONOCHROME2", "MONOCHROME1", "RGB"]))
    frames = draw(st.sampled_from([None, 0, 1, 2, 3, 10**9]))
    if frames is not None:
        ds.NumberOfFrames = frames
    syntax = draw(st.sampled_from(SYNTAXES))
    ds.file_meta.TransferSyntaxUID = syntax
    pixels = draw(st.binary(max_size=1200))
    if syntax in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5"):
        ds.PixelData = encapsulate([pixels or b"\x00\x00"])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels
    for key, n in TEXT_TAGS.items():  # stored as text, read back as numbers: any text at all
        if draw(st.booleans()):
            k = draw(st.sampled_from([n, n - 1, n + 1]))
            text = "\\".join(str(draw(DS_VALUES))[:16] for _ in range(max(k, 1)))
            data = text.encode() + b" " * (len(text) % 2)
            tag = Tag(key)
            ds[tag] = RawDataElement(tag, "DS", len(data), data, 0, False, True)
    with tempfile.TemporaryDirectory() as folder:
        path = write_dicom(Path(folder) / "x.dcm", ds)
        return ".dcm", path.read_bytes()


def _seed_dicoms() -> list[tuple[str, bytes]]:
    with tempfile.TemporaryDirectory() as folder:
        return [(".dcm", write_dicom(Path(folder) / "x.dcm", dicom_dataset()).read_bytes())]


def check_dicom(item: tuple[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        volume = outcome(read_dicom_series, _written(*item, folder))
        if volume is not None:
            assert volume.data.ndim == 3 and np.isfinite(volume.data).all()
            assert np.isfinite(volume.affine).all()


test_read_dicom_any_dataset, test_read_dicom_any_dataset_deep = twice(dicom_files())(check_dicom)
test_read_dicom_mutated, test_read_dicom_mutated_deep = twice(mutated(_seed_dicoms()))(check_dicom)


# ----------------------------------------------------------------------------- configs

FIELD_NAMES = ["method", "preset", "backbone", "data", "train", "method_args", "output_dir"]
SUB_NAMES = list(to_dict(RunConfig())["train"]) + list(to_dict(RunConfig())["data"])
SUB_NAMES += list(to_dict(RunConfig())["backbone"])
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["auto", "cpu", "val", "clip", "mediclip", "anomed", "cuda:1", "folder"]),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(SUB_NAMES) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
CONFIGS = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), VALUES, max_size=5)
DOTTED = [f"{section}.{name}" for section in ("train", "data", "backbone") for name in SUB_NAMES]
OVERRIDES = st.lists(
    st.tuples(
        st.sampled_from(DOTTED + FIELD_NAMES) | st.text(max_size=10), st.text(max_size=10)
    ).map(lambda kv: f"{kv[0]}={kv[1]}")
    | st.text(max_size=16),
    max_size=4,
)


def check_config(item: tuple[dict, list[str]]) -> None:
    data, overrides = item
    try:
        cfg = from_dict(RunConfig, apply_overrides(data, overrides))
    except AnomedError as exc:
        assert str(exc)
        return
    assert isinstance(cfg, RunConfig)
    assert from_dict(RunConfig, to_dict(cfg)) == cfg  # what is accepted round-trips


def check_yaml_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(text)
        result = outcome(load_yaml, path)
        assert result is None or isinstance(result, dict)


test_config_parsing, test_config_parsing_deep = twice(st.tuples(CONFIGS, OVERRIDES))(check_config)
YAML_TEXT = st.text(alphabet=st.sampled_from(list("ab: -[]{}&*!|>'\"\n\t#%@`,?.01")), max_size=80)
test_load_yaml_any_text, test_load_yaml_any_text_deep = twice(YAML_TEXT)(check_yaml_text)
