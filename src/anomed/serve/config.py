"""Settings of `anomed serve`, checked in one place like every anomed config (see anomed.config).

Limits are what keep one upload from taking the server down: the request body is capped while it
streams in, an image's pixel count and a volume's voxel count are read from the file's header
before anything is decoded, and a zipped DICOM series is bounded in members and unpacked bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated, Literal

from anomed.config import DEVICE, Bounds, Pattern

TOKEN_ENV = "ANOMED_TOKEN"
TOKEN = Pattern(r"[!-~]{8,}", "eight or more printable characters without spaces")


@dataclass
class ServeConfig:
    """What `anomed serve` runs with; every field is also a CLI flag or has a safe default."""

    runs: list[str] = field(default_factory=list)  # checkpoint folders, or NAME=FOLDER
    host: str = "127.0.0.1"  # loopback only unless the user names another address
    port: Annotated[int, Bounds(0, 65535)] = 8000  # 0: any free port
    token: Annotated[str, TOKEN] | None = None  # None: no auth (ANOMED_TOKEN is read by the CLI)
    data_dir: str = "runs/serve"  # uploads, pictures and the SQLite database
    device: Annotated[str, DEVICE] = "auto"
    runtime: Literal["torch", "onnx", "openvino"] = "torch"  # onnx/openvino: the runs' exports
    max_upload_mb: Annotated[float, Bounds(0.0, 65536.0, open_lo=True)] = 512.0  # per request
    max_megapixels: Annotated[float, Bounds(0.0, 170.0, open_lo=True)] = 50.0  # per image/slice
    max_megavoxels: Annotated[float, Bounds(0.0, 4096.0, open_lo=True)] = 256.0  # per volume
    max_zip_members: Annotated[int, Bounds(1, 100_000)] = 5000
    max_batch: Annotated[int, Bounds(1, 1024)] = 16  # images per forward pass
    batch_wait_ms: Annotated[float, Bounds(0.0, 1000.0)] = 5.0  # wait for more after the first
    job_workers: Annotated[int, Bounds(1, 16)] = 1  # study jobs processed at once
    access_log: bool = False  # one log line per request
    domain_check: Literal["warn", "refuse", "off"] = "warn"  # inputs unlike the training images

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    @property
    def max_voxels(self) -> int:
        return int(self.max_megavoxels * 1e6)

    @property
    def max_unzipped_bytes(self) -> int:
        """A zipped series may unpack to four times the upload cap, no more."""
        return 4 * self.max_upload_bytes


def token_from_env(token: str | None) -> str | None:
    """The --token flag, else ANOMED_TOKEN (an empty variable counts as unset)."""
    return token if token is not None else (os.environ.get(TOKEN_ENV) or None)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
