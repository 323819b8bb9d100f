"""Read 2D images and pixel masks from disk into the arrays every other part expects.

An image comes back as float32 (H, W, 3) in [0, 1]; a mask as bool (H, W). Both readers accept
any format Pillow decodes (PNG, JPEG, BMP, TIFF, ...), including 16-bit PNG/TIFF, and fail with an
`AnomedError` naming the file when it is missing, truncated or not an image at all.

Hostile files are refused from the header, before any pixel is decoded:
- more than `max_pixels()` pixels (default 50 Mpx, environment variable ANOMED_MAX_PIXELS): a
  decompression bomb (a 144-Mpx PNG can be 140 kB) or a whole-slide scan;
- several pages or frames (multi-page TIFF, animated GIF/PNG): which page is "the" image is not
  guessed, so scoring page 1 silently is avoided;
- NaN/Inf float pixels (after decoding; a mask with them too).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anomed.errors import AnomedError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_LOSSY_EXTENSIONS = frozenset({".jpg", ".jpeg"})
DEFAULT_MAX_PIXELS = 50_000_000  # 7071 x 7071; a mammogram is ~20 Mpx
MIN_SIDE = 8  # the smallest side a detector scores (engine.detector, engine.volumes)


def max_pixels() -> int:
    """The largest image (width x height) read: ANOMED_MAX_PIXELS, else 50 million."""
    raw = os.environ.get("ANOMED_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise AnomedError(
            f"ANOMED_MAX_PIXELS={raw!r}: expected a positive whole number of pixels. "
            "Fix: unset it or set e.g. ANOMED_MAX_PIXELS=100000000."
        )
    return value


def is_image_file(path: str | Path) -> bool:
    """True when the name ends in an image extension (case-insensitive: `X.PNG` counts)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def why_not_an_image(path: str | Path) -> str | None:
    """None when `path` decodes as an image anomed reads, else why not in a short phrase
    (e.g. "not a readable image (UnidentifiedImageError: ...)"): the file is fully decoded."""
    try:
        _decode(Path(path))
    except AnomedError as exc:
        return str(exc).removeprefix(f"{path}: ").split(" Fix:")[0].rstrip(".")
    return None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as float32 (H, W, 3) RGB in [0, 1].

    Grayscale is replicated to 3 channels; alpha is dropped after compositing on black.
    8-bit data is divided by 255. Integer data wider than 8 bits (16-bit PNG/TIFF) is scaled by
    the image's own [min, max], so a 12-bit scan stored in a 16-bit container is neither dark nor
    clipped; a constant image of that kind becomes all zeros.
    """
    path = Path(path)
    arr = _decode(path)  # (H, W) or (H, W, 3), native dtype
    _check_finite(arr, path)
    if arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.integer) or not _in_unit_range(arr):
        out = _minmax(arr)
    else:  # float data already in [0, 1]
        out = arr.astype(np.float32)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return np.ascontiguousarray(out, dtype=np.float32)


def _check_finite(arr: np.ndarray, path: Path) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise AnomedError(
            f"{path}: {int(np.size(arr) - np.isfinite(arr).sum())} pixels are NaN or Inf. "
            "Fix: replace them (e.g. with 0) and re-export the image."
        )


def check_pixels(image: np.ndarray, source: str) -> np.ndarray:
    """An in-memory float image, refused when a pixel is NaN/Inf or outside [0, 1]."""
    if not np.isfinite(image).all():
        raise AnomedError(f"{source}: NaN or Inf pixels. Fix: replace them before scoring.")
    if image.size and (float(image.min()) < 0.0 or float(image.max()) > 1.0):
        raise AnomedError(
            f"{source}: pixel values span [{float(image.min()):g}, {float(image.max()):g}]; "
            "anomed expects [0, 1]. Fix: scale the image (e.g. divide 8-bit data by 255)."
        )
    return image


def read_mask(paths: Sequence[str | Path], size: tuple[int, int] | None = None) -> np.ndarray:
    """Read and merge (logical OR) the mask files of one image into a bool (H, W) array.

    Foreground is > 127 for 8-bit files (JPEG masks carry compression noise) and > half the
    dtype maximum for wider integers. A lossless file whose non-zero values all lie at or below
    that threshold (a 0/1 label map) counts every non-zero pixel as foreground, since the plain
    threshold would silently return an empty mask. Colour masks use the brightest channel.
    Masks are resized (nearest neighbour, with a warning) to `size=(H, W)` when given, otherwise
    to the first file's size.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise AnomedError("read_mask got no mask files. Fix: pass at least one mask path.")
    merged: np.ndarray | None = None
    target = tuple(size) if size is not None else None
    for path in paths:
        arr = _decode(path)
        _check_finite(arr, path)
        mask = _mask_from_array(arr, path)  # (H, W) bool
        if target is None:
            target = mask.shape
        if mask.shape != target:
            warnings.warn(
                f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but {target[0]}x"
                f"{target[1]} was expected; resized with nearest neighbour.",
                stacklevel=2,
            )
            mask = _resize_nearest(mask, target)
        merged = mask if merged is None else merged | mask
    return merged


def _decode(path: Path) -> np.ndarray:
    """Fully decode a file to its native array: (H, W) or (H, W, 3), alpha composited on black.

    Size and page count are checked from the header first (see the module docstring)."""
    if not path.is_file():
        if path.is_dir():
            what = "a folder, not a file"
        elif path.exists():
            what = "not a regular file (a pipe, socket or device)"
        else:
            what = "no such file"
        raise AnomedError(f"{path}: {what}. Fix: check the path or the dataset layout.")
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS and limit > Image.MAX_IMAGE_PIXELS:  # the user raised ours
        Image.MAX_IMAGE_PIXELS = limit  # Pillow refuses above twice its own
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            img = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's own, far higher limit
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "its size"
        raise AnomedError(_too_large(path, size)) from exc
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise AnomedError(_unreadable(path, exc)) from exc
    with img:
        _check_header(img, path)
        try:
            wide_rgb = img.mode in ("RGB", "RGBA") and _has_16bit_tiles(img)
            img.load()  # force a full decode so a truncated file fails here, not later
            arr = None if wide_rgb else _pil_to_array(img)
        except Exception as exc:  # noqa: BLE001 - as above
            raise AnomedError(_unreadable(path, exc)) from exc
    if arr is None:  # Pillow reduces 16-bit colour to 8 bits; OpenCV keeps all of them
        arr = _cv2_wide_rgb(path)
    return arr


def _unreadable(path: Path, exc: BaseException) -> str:
    return (
        f"{path}: not a readable image ({type(exc).__name__}: {exc}). "
        "Fix: re-export it as PNG, or remove it from the dataset."
    )


def _too_large(path: Path, size: str) -> str:
    limit = max_pixels()
    return (
        f"{path}: {size} is above the limit of {limit:,} pixels (a decompression bomb, or a "
        "whole-slide scan). Fix: downscale the image, or raise the limit with "
        f"ANOMED_MAX_PIXELS={2 * limit} if it is genuine."
    )


def _check_header(img: Image.Image, path: Path) -> None:
    """Refuse bombs and multi-page files before decoding a pixel."""
    width, height = img.size
    if width * height > max_pixels():
        raise AnomedError(_too_large(path, f"{width}x{height} = {width * height:,} pixels"))
    try:
        frames = int(getattr(img, "n_frames", 1) or 1)
    except Exception as exc:  # noqa: BLE001 - a broken frame table is a broken file
        raise AnomedError(_unreadable(path, exc)) from exc
    if frames > 1:
        raise AnomedError(
            f"{path}: holds {frames} pages/frames (a multi-page TIFF or an animation); anomed "
            "reads single images and does not guess which page to score. Fix: save the page "
            "you mean as its own file (e.g. `tiffsplit`, or Pillow's img.seek(i))."
        )


def _has_16bit_tiles(img: Image.Image) -> bool:
    """True when Pillow will decode from 16-bit samples (it then hands back only 8 bits)."""
    return any(";16" in str(tile.args) for tile in getattr(img, "tile", []))


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Pillow image -> native array; palettes expanded, alpha composited on black."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # any byte order -> native uint16
    elif mode == "I":
        arr = np.asarray(img)  # int32; Pillow uses it for some 16-bit files
        if arr.size and arr.min() >= 0 and arr.max() <= np.iinfo(np.uint16).max:
            return arr.astype(np.uint16)
        return arr
    elif mode not in ("1", "L", "LA", "RGB", "RGBA", "F"):  # CMYK, YCbCr, LAB, HSV, ...
        img = img.convert("RGB")
    arr = np.asarray(img)
    if img.mode in ("LA", "RGBA"):
        arr = _composite_on_black(arr[..., :-1], arr[..., -1])
    return arr


def _cv2_wide_rgb(path: Path) -> np.ndarray:
    """Read 16-bit colour PNG/TIFF with OpenCV: (H, W, 3) uint16 RGB, alpha composited."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3:
        raise AnomedError(
            f"{path}: OpenCV could not read this 16-bit colour image. "
            "Fix: re-export it as PNG (8 or 16 bit)."
        )
    if arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        return _composite_on_black(arr[..., :3], arr[..., 3])
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _composite_on_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """color * alpha / alpha_max, keeping the input dtype. color (H, W[, C]), alpha (H, W)."""
    amax = float(np.iinfo(alpha.dtype).max) if np.issubdtype(alpha.dtype, np.integer) else 1.0
    weight = alpha.astype(np.float64) / amax
    if color.ndim == 3:
        weight = weight[..., None]
    out = color.astype(np.float64) * weight
    if np.issubdtype(color.dtype, np.integer):
        out = np.rint(out)
    out = out.astype(color.dtype)
    return out[..., 0] if out.ndim == 3 and out.shape[2] == 1 else out


def _in_unit_range(arr: np.ndarray) -> bool:
    return arr.size == 0 or (float(np.nanmin(arr)) >= 0.0 and float(np.nanmax(arr)) <= 1.0)


def _minmax(arr: np.ndarray) -> np.ndarray:
    """Linear map of the image's own [min, max] to [0, 1]; a constant image maps to 0.

    Up to 16-bit integers are exact in float32, so those are mapped in float32 (half the
    memory of a float64 copy of a 50-Mpx colour image); wider data in float64."""
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    exact = np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize <= 2
    work = arr.astype(np.float32 if exact else np.float64)
    work -= lo
    work /= hi - lo
    return work.astype(np.float32, copy=False)


def _mask_from_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """Native array -> bool (H, W) foreground, by the thresholds described in `read_mask`."""
    if arr.ndim == 3:
        arr = arr.max(axis=2)  # brightest channel: a red or green mask still counts
    if arr.dtype == np.bool_:
        return arr.copy()
    if np.issubdtype(arr.dtype, np.integer):
        threshold = 127 if arr.dtype == np.uint8 else np.iinfo(arr.dtype).max // 2
    else:
        arr = arr if _in_unit_range(arr) else _minmax(arr)
        threshold = 0.5
    lossless = path.suffix.lower() not in _LOSSY_EXTENSIONS
    if lossless and arr.size and 0 < arr.max() <= threshold:  # a 0/1 (or small) label map
        return arr > 0
    return arr > threshold


def _resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool (H, W) mask to size=(H, W) with nearest neighbour."""
    out = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


def shrink_to_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W[, C]) shrunk (area filter) so its longer side is at most `max_side`; smaller
    images are returned as they are. Pictures of large scans stay bounded in memory."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
