"""Uploads: stored under server-made names, identified by their bytes, bounded before decoding.

A client's file name is only ever a label shown back to the user; it never becomes a path.
The type is read from magic bytes (PNG, JPEG, TIFF, BMP, DICOM's "DICM" at byte 128, a NIfTI-1/2
header, gzip holding a NIfTI header, zip), not from the name. Before any pixel is decoded, the
header's pixel / voxel count is checked against the limits (a 40k x 40k PNG header is refused
while still a few bytes); a zip is unpacked member by member under numbered names, counting the
bytes actually written.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import unicodedata
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from anomed.serve.config import ServeConfig
from anomed.serve.errors import ApiError

CHUNK = 1 << 20
HEAD = 4096  # bytes read to sniff the type
IMAGE_KINDS = ("png", "jpeg", "tiff", "bmp")
SUFFIX = {
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "bmp": ".bmp",
    "dicom": ".dcm",
    "nifti": ".nii",
    "nifti_gz": ".nii.gz",
    "zip": ".zip",
}
ACCEPTED = "PNG, JPEG, TIFF, BMP, DICOM (.dcm or a zipped series) or NIfTI (.nii, .nii.gz)"
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
# what zipfile raises on a broken, truncated or unsupported archive (ApiError passes through)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


@dataclass
class StagedFile:
    """One upload written to disk and checked; `target` is what the scorer reads."""

    label: str  # the client's name, cleaned, for display only
    path: Path  # the stored upload (server-made name)
    kind: str  # a key of SUFFIX
    size: int  # bytes
    sha256: str
    target: Path | None = None  # the image, NIfTI, DICOM file or unpacked series folder

    @property
    def modality(self) -> Literal["image", "volume"]:
        return "image" if self.kind in IMAGE_KINDS else "volume"


def clean_label(name: str | None) -> str:
    """The client's file name as a display label; a name with path parts or control characters
    is refused (it is never used as a path, but such a name means a confused or hostile client)."""
    name = (name or "").strip()
    if not name:
        return "upload"
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise ApiError(400, "the file name holds control characters. Fix: rename the file.")
    if "/" in name or "\\" in name or name in (".", "..") or re.match(r"[A-Za-z]:", name):
        raise ApiError(
            400,
            f"file name {name[:80]!r} looks like a path; send a plain file name "
            "(uploads are stored under server-made names).",
        )
    return name[:200]


def sniff(head: bytes) -> str | None:
    """The upload's kind from its first bytes, or None when it is none of ACCEPTED."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 18 and _u32le(head, 14) in _BMP_HEADER_SIZES:
        return "bmp"
    if head[128:132] == b"DICM":
        return "dicom"
    if _is_nifti_header(head):
        return "nifti"
    if head[:2] == b"\x1f\x8b":
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1024)
        except zlib.error:
            return None
        return "nifti_gz" if _is_nifti_header(inner) else None
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return None


def _u32le(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _is_nifti_header(head: bytes) -> bool:
    """NIfTI-1 (sizeof_hdr 348, magic "n+1" at 344) or NIfTI-2 (540, "n+2" at 4), any byte order."""
    if len(head) >= 348 and head[344:348] == b"n+1\x00":
        return 348 in struct.unpack_from("<i", head) + struct.unpack_from(">i", head)
    if len(head) >= 540 and head[4:8] == b"n+2\x00":
        return 540 in struct.unpack_from("<i", head) + struct.unpack_from(">i", head)
    return False


def stage_upload(source: BinaryIO, label: str, folder: Path, max_bytes: int) -> StagedFile:
    """Copy an upload into `folder` in chunks (size capped, SHA-256 taken), then name it by its
    sniffed kind: `input.png`, `input.nii.gz`, ... Raises ApiError 400 / 413 / 415."""
    folder.mkdir(parents=True, exist_ok=True)
    part, digest, size, head = folder / "upload.part", hashlib.sha256(), 0, b""
    with open(part, "wb") as out:
        while block := source.read(CHUNK):
            size += len(block)
            if size > max_bytes:
                raise ApiError(413, f"{label}: larger than the {max_bytes / 2**20:g} MiB limit.")
            if len(head) < HEAD:
                head += block[: HEAD - len(head)]
            digest.update(block)
            out.write(block)
    if size == 0:
        raise ApiError(400, f"{label}: the file is empty (0 bytes).")
    kind = sniff(head)
    if kind is None:
        raise ApiError(415, f"{label}: not a supported file by its contents; send {ACCEPTED}.")
    path = part.rename(folder / f"input{SUFFIX[kind]}")
    return StagedFile(label, path, kind, size, digest.hexdigest())


def check_contents(staged: StagedFile, cfg: ServeConfig) -> StagedFile:
    """Bound the decoded size from the header (images, DICOM, NIfTI) or unpack a zipped
    series; sets `staged.target`. Raises ApiError 413 (too large) or 422 (unreadable)."""
    if staged.modality == "image":
        check_image_header(staged.path, staged.label, cfg.max_pixels)
        staged.target = staged.path
    elif staged.kind == "dicom":
        check_dicom_header(staged.path, staged.label, cfg)
        staged.target = staged.path
    elif staged.kind in ("nifti", "nifti_gz"):
        check_nifti_header(staged.path, staged.label, cfg)
        staged.target = staged.path
    else:
        staged.target = unpack_dicom_zip(staged.path, staged.label, staged.path.parent, cfg)
    return staged


def _too_many(label: str, what: str, count: int, limit: int) -> ApiError:
    return ApiError(413, f"{label}: {what} {count:,} exceeds the server's limit of {limit:,}.")


def check_image_header(path: Path, label: str, max_pixels: int) -> None:
    """Width x height from the header (Pillow reads no pixels on open) against the limit."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard, far above ours
        raise ApiError(
            413, f"{label}: the header declares more than the limit of {max_pixels:,} pixels."
        ) from exc
    except Exception as exc:  # Pillow raises many types for a broken header
        raise ApiError(422, f"{label}: not a readable image ({type(exc).__name__}).") from exc
    if width * height > max_pixels:
        raise _too_many(label, f"image of {width} x {height} =", width * height, max_pixels)


def check_dicom_header(path: Path, label: str, cfg: ServeConfig) -> int:
    """Rows x Columns x NumberOfFrames from the header, read without the pixel data; returns
    the voxel count after checking the frame and the file against the limits."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:  # pydicom raises many types for a broken header
        raise ApiError(422, f"{label}: unreadable DICOM header ({type(exc).__name__}).") from exc
    if rows * cols > cfg.max_pixels:
        raise _too_many(label, f"DICOM frame of {rows} x {cols} =", rows * cols, cfg.max_pixels)
    if rows * cols * frames > cfg.max_voxels:
        raise _too_many(label, "DICOM voxel count", rows * cols * frames, cfg.max_voxels)
    return rows * cols * frames


def check_nifti_header(path: Path, label: str, cfg: ServeConfig) -> None:
    """The NIfTI shape from its header (nibabel reads no voxels on load)."""
    import nibabel as nib
    import numpy as np

    try:
        shape = tuple(int(s) for s in nib.load(path).shape)
    except Exception as exc:  # nibabel raises many types for a broken header
        raise ApiError(422, f"{label}: unreadable NIfTI header ({type(exc).__name__}).") from exc
    voxels = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if voxels > cfg.max_voxels:
        raise _too_many(label, f"volume of shape {shape}: voxel count", voxels, cfg.max_voxels)
    if len(shape) >= 2 and shape[0] * shape[1] > cfg.max_pixels:
        raise _too_many(label, "slice pixel count", shape[0] * shape[1], cfg.max_pixels)


def unpack_dicom_zip(path: Path, label: str, folder: Path, cfg: ServeConfig) -> Path:
    """Unpack the DICOM members of a zip into `folder/series/00000.dcm, ...` (member names are
    never used); other members are skipped. Bounded in members, bytes written and voxels."""
    series = folder / "series"
    series.mkdir()
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > cfg.max_zip_members:
                raise _too_many(label, "zip member count", len(members), cfg.max_zip_members)
            budget = [cfg.max_unzipped_bytes]
            kept = [
                _unpack_member(zf, m, series / f"{i:05d}.dcm", label, budget)
                for i, m in enumerate(members)
            ]
    except _ZIP_ERRORS as exc:
        shutil.rmtree(series, ignore_errors=True)
        raise ApiError(422, f"{label}: broken or unsupported zip ({type(exc).__name__}).") from exc
    files = [p for p in kept if p is not None]
    if not files:
        raise ApiError(422, f"{label}: the zip holds no DICOM file (no 'DICM' marker).")
    _check_series_size(files, label, cfg)
    return series


def _unpack_member(
    zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, label: str, budget: list[int]
) -> Path | None:
    """Copy one member to `target`, counting bytes against `budget`; None if not DICOM."""
    if member.flag_bits & 0x1:
        raise ApiError(
            422, f"{label}: the zip is encrypted. Fix: zip the series without a password."
        )
    with zf.open(member) as src:
        head = src.read(132)
        if head[128:132] != b"DICM":
            return None
        with open(target, "wb") as out:
            out.write(head)
            budget[0] -= len(head)
            while block := src.read(CHUNK):
                budget[0] -= len(block)
                if budget[0] < 0:
                    raise ApiError(413, f"{label}: the zip unpacks to more than the server allows.")
                out.write(block)
    return target


def _check_series_size(files: list[Path], label: str, cfg: ServeConfig) -> None:
    voxels = sum(check_dicom_header(path, label, cfg) for path in files)
    if voxels > cfg.max_voxels:
        raise _too_many(label, "DICOM series voxel count", voxels, cfg.max_voxels)
