"""Hostile 2D inputs: broken, bombed, multi-page, NaN, odd-mode and odd-named image files.

The largest files are written as compressed streams: a 144-Mpx PNG is ~140 kB on disk.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from fuzz_base import InputCase, Writer, good_png, gray, png_bytes, raw, rng, save, truncated
from PIL import Image

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
        arr = rng().uniform(lo, hi, (40, 40)).astype(np.float32)
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
    InputCase("image", "truncated-png", truncated("cut.png", lambda: png_bytes(gray())), False),
    InputCase("image", "truncated-jpeg", truncated("cut.jpg", _jpeg_bytes, 0.6), False),
    InputCase("image", "bad-crc-png", _bad_crc, False),
    InputCase("image", "bmp-garbage", raw("junk.bmp", b"BM" + bytes(range(256)) * 2), False),
    InputCase("image", "tiff-garbage", raw("junk.tif", b"II*\x00" + b"\xff" * 64), False),
    InputCase("image", "zero-width-png", raw("w0.png", png_claiming(0, 10, 0)), False),
    InputCase("image", "header-bomb-png", _lazy_png("claims.png", 100_000, 100_000, 2), False),
    InputCase("image", "wide-bomb-png", _lazy_png("wide.png", 65535, 2000), False, "pixels", True),
    InputCase("image", "square-bomb-png", _lazy_png("sq.png", 12000, 12000), False, "pixels", True),
    InputCase("image", "multi-page-tiff", _multipage, False, "page"),
    InputCase("image", "animated-gif", _animated("anim.gif"), False, "gif", unlisted=True),
    InputCase("image", "animated-png", _animated("anim.png"), False, "frame"),
    InputCase("image", "nan-float-tiff", _float_tiff("nan.tiff", np.nan), False, "nan"),
    InputCase("image", "inf-float-tiff", _float_tiff("inf.tiff", np.inf), False, "inf"),
    InputCase("image", "neg-inf-float-tiff", _float_tiff("ninf.tiff", -np.inf), False, "inf"),
    InputCase("image", "1x1-png", _pil("dot.png", lambda: gray(1, 1)), False, "small"),
    InputCase("image", "1xN-png", _pil("line.png", lambda: gray(1, 500)), False, "small"),
    InputCase("image", "fifo-named-png", _fifo, False, "pipe.png"),
    InputCase("image", "folder-named-png", _dir_named_png, False, "folder.png", unlisted=True),
    InputCase("image", "broken-symlink", _broken_link, False, "gone.png", unlisted=True),
    InputCase("image", "symlink-loop", _link_loop, False, "loop_a.png", unlisted=True),
    InputCase(
        "image",
        "unknown-extension",
        raw("scan.webp", b"RIFF0000WEBP"),
        False,
        "scan.webp",
        unlisted=True,
    ),
    InputCase(
        "image", "no-extension", raw("scan", png_bytes(gray())), False, "scan", unlisted=True
    ),
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
        unlisted=True,
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
