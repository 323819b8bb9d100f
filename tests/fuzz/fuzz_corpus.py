"""The fuzz suite's corpus: writers that put one hostile (or odd but valid) input into a folder.

Every case is an `InputCase`: `write(folder) -> path` creates the input, `ok` says whether a
correct reader scores it (True) or refuses it with one message naming it and a fix (False), and
`fragment` is a word that message must hold. The writers need no network and no test data; the
largest files are written as compressed streams (a 144-Mpx PNG is ~140 kB on disk).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

Writer = Callable[[Path], Path]


@dataclass(frozen=True)
class InputCase:
    """One input for `anomed predict` / the readers, and what a correct reader does with it."""

    kind: str  # image | nifti | dicom | name
    name: str
    write: Writer
    ok: bool  # True: scored; False: one error row naming it with a fix
    fragment: str = ""  # a word the error message must contain (lower-cased compare)
    slow: bool = False  # large files: only in the slow suite

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gray(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    """A textured uint8 (H, W) image."""
    return (_rng(seed).random((h, w)) * 255).astype(np.uint8)


def save(path: Path, image: Image.Image | np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    img.save(path, **kwargs)
    return path


def good_png(folder: Path, name: str = "good.png", seed: int = 0) -> Path:
    return save(folder / name, gray(seed=seed))


def raw(name: str, data: bytes) -> Writer:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


# ----------------------------------------------------------------------------- PNG by hand


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, rows: int | None = None, colour: int = 0) -> bytes:
    """A PNG whose header claims width x height 8-bit pixels; the first `rows` rows are
    written as zeros (default: all, a valid decompression bomb written in row chunks)."""
    rows = height if rows is None else rows
    channels = {0: 1, 2: 3}[colour]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    comp = zlib.compressobj(9)
    line = bytes(1 + width * channels)  # filter byte 0 + zero samples
    block = max(1, (1 << 22) // len(line))
    parts = []
    for start in range(0, rows, block):
        parts.append(comp.compress(line * min(block, rows - start)))
    parts.append(comp.flush())
    sig = b"\x89PNG\r\n\x1a\n"
    return sig + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def _lazy_png(name: str, width: int, height: int, rows: int | None = None) -> Writer:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(png_claiming(width, height, rows))
        return folder / name

    return write


def _bad_crc(folder: Path) -> Path:
    data = bytearray(png_bytes(gray()))
    data[29] ^= 0xFF  # inside the IHDR CRC
    (folder / "bad_crc.png").write_bytes(bytes(data))
    return folder / "bad_crc.png"


def _truncated(name: str, data_fn: Callable[[], bytes], keep: float = 0.5) -> Writer:
    def write(folder: Path) -> Path:
        data = data_fn()
        (folder / name).write_bytes(data[: int(len(data) * keep)])
        return folder / name

    return write


def _jpeg_bytes() -> bytes:
    ok, buf = cv2.imencode(".jpg", gray(64, 64))
    assert ok
    return buf.tobytes()


# ----------------------------------------------------------------------------- Pillow writers


def _pil(name: str, make: Callable[[], Image.Image | np.ndarray], **kwargs) -> Writer:
    def write(folder: Path) -> Path:
        return save(folder / name, make(), **kwargs)

    return write


def _multipage(folder: Path) -> Path:
    pages = [Image.fromarray(gray(seed=i)) for i in range(3)]
    path = folder / "pages.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def _animated(name: str) -> Writer:
    def write(folder: Path) -> Path:
        frames = [Image.fromarray(gray(seed=i)).convert("P") for i in range(3)]
        frames[0].save(folder / name, save_all=True, append_images=frames[1:], duration=50)
        return folder / name

    return write


def _float_tiff(name: str, fill: float | None = None, lo: float = 0, hi: float = 1) -> Writer:
    def write(folder: Path) -> Path:
        arr = _rng().uniform(lo, hi, (40, 40)).astype(np.float32)
        if fill is not None:
            arr[3:9, 5:7] = fill
        return save(folder / name, Image.fromarray(arr, mode="F"))

    return write


def _palette_alpha() -> Image.Image:
    img = Image.fromarray(gray()).convert("P")
    img.info["transparency"] = 0
    return img


def _cv2(name: str, make: Callable[[], np.ndarray]) -> Writer:
    def write(folder: Path) -> Path:
        cv2.imwrite(str(folder / name), make())
        return folder / name

    return write


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.png"
    os.mkfifo(path)
    return path


def _dir_named_png(folder: Path) -> Path:
    path = folder / "folder.png"
    path.mkdir()
    return path


def _broken_link(folder: Path) -> Path:
    path = folder / "gone.png"
    path.symlink_to(folder / "never-there.png")
    return path


def _link_loop(folder: Path) -> Path:
    (folder / "loop_a.png").symlink_to(folder / "loop_b.png")
    (folder / "loop_b.png").symlink_to(folder / "loop_a.png")
    return folder / "loop_a.png"


def _good_link(folder: Path) -> Path:
    target = good_png(folder / ".targets", "target.png", seed=5)
    (folder / "link.png").symlink_to(target)
    return folder / "link.png"


IMAGE_CASES: list[InputCase] = [
    InputCase("image", "zero-byte", raw("empty.png", b""), False, "empty.png"),
    InputCase("image", "text-as-png", raw("text.png", b"hello, not pixels\n" * 9), False, "text"),
    InputCase("image", "html-as-jpg", raw("page.jpg", b"<html><body>x</body></html>"), False),
    InputCase("image", "png-magic-only", raw("magic.png", b"\x89PNG\r\n\x1a\n"), False),
    InputCase("image", "truncated-png", _truncated("cut.png", lambda: png_bytes(gray())), False),
    InputCase("image", "truncated-jpeg", _truncated("cut.jpg", _jpeg_bytes, 0.6), False),
    InputCase("image", "bad-crc-png", _bad_crc, False),
    InputCase("image", "bmp-garbage", raw("junk.bmp", b"BM" + bytes(range(256)) * 2), False),
    InputCase("image", "tiff-garbage", raw("junk.tif", b"II*\x00" + b"\xff" * 64), False),
    InputCase("image", "zero-width-png", raw("w0.png", png_claiming(0, 10, 0)), False),
    InputCase("image", "header-bomb-png", _lazy_png("claims.png", 100_000, 100_000, 2), False),
    InputCase("image", "wide-bomb-png", _lazy_png("wide.png", 65535, 2000), False, "pixels", True),
    InputCase("image", "square-bomb-png", _lazy_png("sq.png", 12000, 12000), False, "pixels", True),
    InputCase("image", "multi-page-tiff", _multipage, False, "page"),
    InputCase("image", "animated-gif", _animated("anim.gif"), False, "gif"),
    InputCase("image", "animated-png", _animated("anim.png"), False, "frame"),
    InputCase("image", "nan-float-tiff", _float_tiff("nan.tiff", np.nan), False, "nan"),
    InputCase("image", "inf-float-tiff", _float_tiff("inf.tiff", np.inf), False, "inf"),
    InputCase("image", "neg-inf-float-tiff", _float_tiff("ninf.tiff", -np.inf), False, "inf"),
    InputCase("image", "1x1-png", _pil("dot.png", lambda: gray(1, 1)), False, "small"),
    InputCase("image", "1xN-png", _pil("line.png", lambda: gray(1, 500)), False, "small"),
    InputCase("image", "fifo-named-png", _fifo, False, "pipe.png"),
    InputCase("image", "folder-named-png", _dir_named_png, False, "folder.png"),
    InputCase("image", "broken-symlink", _broken_link, False, "gone.png"),
    InputCase("image", "symlink-loop", _link_loop, False, "loop_a.png"),
    InputCase("image", "unknown-extension", raw("scan.webp", b"RIFF0000WEBP"), False, "scan.webp"),
    InputCase("image", "no-extension", raw("scan", png_bytes(gray())), False, "scan"),
    # odd but valid: scored
    InputCase("image", "float-tiff-hu-range", _float_tiff("ct.tiff", lo=-1000, hi=3000), True),
    InputCase("image", "float-tiff-unit", _float_tiff("unit.tiff"), True),
    InputCase("image", "float-tiff-constant", _float_tiff("flat.tiff", 7.0, 7, 7), True),
    InputCase("image", "16bit-png", _cv2("d16.png", lambda: (gray() * 16).astype(np.uint16)), True),
    InputCase(
        "image",
        "16bit-rgb-png",
        _cv2("c16.png", lambda: np.dstack([gray(seed=i) for i in range(3)]).astype(np.uint16) * 99),
        True,
    ),
    InputCase(
        "image", "16bit-constant", _cv2("k16.png", lambda: np.full((30, 30), 9, np.uint16)), True
    ),
    InputCase(
        "image",
        "16bit-big-endian-tiff",
        _pil("be.tiff", lambda: Image.fromarray((gray() * 200).astype(np.uint16)).convert("I;16B")),
        True,
    ),
    InputCase(
        "image", "int32-tiff", _pil("i32.tiff", lambda: (gray().astype(np.int32) - 99) * 7), True
    ),
    InputCase(
        "image", "palette-png", _pil("pal.png", lambda: Image.fromarray(gray()).convert("P")), True
    ),
    InputCase("image", "palette-alpha-png", _pil("pala.png", _palette_alpha), True),
    InputCase(
        "image",
        "cmyk-jpeg",
        _pil("cmyk.jpg", lambda: Image.fromarray(gray()).convert("CMYK")),
        True,
    ),
    InputCase(
        "image",
        "cmyk-tiff",
        _pil("cmyk.tiff", lambda: Image.fromarray(gray()).convert("CMYK")),
        True,
    ),
    InputCase(
        "image", "bilevel-png", _pil("bw.png", lambda: Image.fromarray(gray()).convert("1")), True
    ),
    InputCase("image", "la-png", _pil("la.png", lambda: np.dstack([gray(), gray(seed=2)])), True),
    InputCase(
        "image",
        "rgba-png",
        _pil("rgba.png", lambda: np.dstack([gray(seed=i) for i in range(4)])),
        True,
    ),
    InputCase(
        "image", "ycbcr-jpeg", _pil("ycc.jpg", lambda: Image.fromarray(gray()).convert("RGB")), True
    ),
    InputCase("image", "8x8-png", _pil("tiny.png", lambda: gray(8, 8)), True),
    InputCase("image", "tall-thin-png", _pil("tall.png", lambda: gray(4000, 8)), True),
    InputCase(
        "image",
        "still-gif",
        _pil("still.gif", lambda: Image.fromarray(gray()).convert("P")),
        False,
        "gif",
    ),
    InputCase("image", "png-named-jpg", raw("really_png.jpg", png_bytes(gray())), True),
    InputCase("image", "upper-case-ext", _pil("LOUD.PNG", lambda: gray()), True),
    InputCase("image", "good-symlink", _good_link, True),
    InputCase("image", "large-ok-png", _lazy_png("big_ok.png", 6000, 5000), True, "", True),
]


# ----------------------------------------------------------------------------- names


def _named(name: str | bytes) -> Writer:
    def write(folder: Path) -> Path:
        path = os.path.join(
            os.fsencode(folder), name if isinstance(name, bytes) else os.fsencode(name)
        )
        Image.fromarray(gray(seed=3)).save(open(path, "wb"), format="PNG")
        return Path(os.fsdecode(path))

    return write


def _named_bad(name: bytes) -> Writer:
    def write(folder: Path) -> Path:
        path = os.path.join(os.fsencode(folder), name)
        with open(path, "wb") as fh:
            fh.write(b"not a png")
        return Path(os.fsdecode(path))

    return write


NAME_CASES: list[InputCase] = [
    InputCase("name", "latin1-bytes", _named(b"scan_\xe9t\xe9.png"), True),
    InputCase("name", "invalid-utf8", _named(b"\xff\xfe\xfd.png"), True),
    InputCase("name", "invalid-utf8-bad-file", _named_bad(b"bad_\xff.png"), False, "bad_"),
    InputCase("name", "newline", _named("two\nlines.png"), True),
    InputCase("name", "comma-quote", _named('a,"b",c.png'), True),
    InputCase("name", "unicode", _named("\u80f8\u90e8_\U0001f9e0.png"), True),
    InputCase("name", "spaces", _named("  spaced  name .png"), True),
    InputCase("name", "long", _named("x" * 240 + ".png"), True),
    InputCase("name", "dots", _named("...png"), True),
    InputCase("name", "collides-after-cleanup", _named("a b.png"), True),
]


# ----------------------------------------------------------------------------- NIfTI


def nifti(
    data: np.ndarray, affine: np.ndarray | None = None, cls=nib.Nifti1Image
) -> nib.Nifti1Image:
    return cls(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine)


def phantom_volume(shape: tuple[int, int, int] = (20, 20, 3), seed: int = 0) -> np.ndarray:
    """A blob on noise: float32 (X, Y, Z) with non-empty axial slices."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    blob = (x**2 + y**2 + 0.2 * z**2 < 0.6).astype(np.float32) * 100
    return blob + _rng(seed).random(shape, dtype=np.float32) * 10


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


def _with_header(name: str, edit: Callable[[nib.Nifti1Header], None]) -> Writer:
    def write(folder: Path) -> Path:
        img = nifti(phantom_volume())
        edit(img.header)
        img.to_filename(folder / name)
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


def _slope(value: float) -> Callable[[nib.Nifti1Header], None]:
    def edit(hdr: nib.Nifti1Header) -> None:
        hdr.set_data_dtype(np.int16)
        hdr["scl_slope"] = value
        hdr["scl_inter"] = 0.0

    return edit


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
        _truncated("cut.nii.gz", lambda: gzip.compress(nifti(phantom_volume()).to_bytes())),
        False,
    ),
    InputCase(
        "nifti",
        "in-plane-1x1",
        _nii("pencil.nii", lambda: nifti(_rng().random((1, 1, 300), np.float32))),
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
    arr = _rng(k).random((ds.Rows, ds.Columns)).astype(np.float32)
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

INPUT_CASES = IMAGE_CASES + NAME_CASES + NIFTI_CASES + DICOM_CASES
