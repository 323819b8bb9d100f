"""Fixtures of the service tests: a tiny checkpoint, test files of every accepted kind, and
an app served by a test client or by real uvicorn on a free loopback port."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from anomed.config import BackboneConfig, RunConfig
from anomed.data.phantoms.heads import phantom_affine, write_dicom_series
from anomed.engine.checkpoint import Calibration, CheckpointInfo, save_checkpoint
from anomed.methods import create_method

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'anomed[serve]'")


@pytest.fixture(scope="session")
def serve_checkpoint(tiny_backbone, tmp_path_factory) -> Path:
    """A MediCLIP checkpoint on the tiny backbone, saved untrained with a fixed threshold and
    colour scale: the files `anomed train` writes, in a fraction of a second."""
    method = create_method("mediclip", tiny_backbone)
    method.set_class_name("brain")
    run = RunConfig(backbone=BackboneConfig(model="anomed-tiny", image_size=112))
    info = CheckpointInfo(
        run=run,
        calibration=Calibration(threshold=0.8, map_min=0.0, map_max=1.0),
        class_name="brain",
        fit={"epochs": 0, "note": "untrained test checkpoint"},
    )
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "checkpoint", method, info)


def png_bytes(height: int = 80, width: int = 90, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((height, width)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def encoded(fmt: str) -> bytes:
    """A small grey image in `fmt` (JPEG, TIFF, BMP, PNG)."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes())).save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares width x height (a few hundred bytes of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def volume_data(shape=(40, 40, 8), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, np.float32)
    data[8:32, 8:32, 1:-1] = 100 + 50 * rng.random((24, 24, shape[2] - 2))
    return data


def nifti_bytes(shape=(40, 40, 8), gz: bool = True) -> bytes:
    img = nib.Nifti1Image(volume_data(shape), phantom_affine(shape))
    data = img.to_bytes()
    if gz:
        import gzip

        data = gzip.compress(data)
    return data


def dicom_zip(folder: Path, shape=(32, 32, 5), extra: dict[str, bytes] | None = None) -> bytes:
    paths = write_dicom_series(folder, volume_data(shape), phantom_affine(shape))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, f"series/{path.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1 in a background thread until `stop`."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
