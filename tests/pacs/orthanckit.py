"""A real Orthanc for the tests: its own config file, a temporary storage folder, free loopback
ports, started as a child process and stopped by its PID (never a mock).

Skipped only where the `Orthanc` binary is absent and the run is not CI: `.ci/run` installs
Debian's orthanc and orthanc-dicomweb and sets ANOMED_REQUIRE_ORTHANC=1, so there a missing
server is a failure, never a skip."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dicomweb_plugin() -> str | None:
    """The DicomWeb plugin's .so: the Debian package's files, else the usual paths."""
    try:
        listed = subprocess.run(
            ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=False
        ).stdout.split()
    except OSError:
        listed = []
    found = [p for p in listed if "libOrthancDicomWeb.so" in p and Path(p).is_file()]
    found += [p for p in PLUGIN_CANDIDATES if Path(p).is_file()]
    return found[0] if found else None


def require_orthanc() -> tuple[str, str]:
    """(binary, plugin) or skip (locally) / fail (CI)."""
    binary, plugin = shutil.which("Orthanc"), dicomweb_plugin()
    if binary and plugin:
        return binary, plugin
    why = "Orthanc binary" if not binary else "Orthanc DicomWeb plugin"
    if os.environ.get("ANOMED_REQUIRE_ORTHANC") == "1" or os.environ.get("CI"):
        pytest.fail(f"{why} missing in CI: apt-get install orthanc orthanc-dicomweb")
    pytest.skip(f"{why} not installed (apt-get install orthanc orthanc-dicomweb)")


class Orthanc:
    """One Orthanc server on 127.0.0.1; `stop()` and `start()` keep its storage and ports."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.binary, plugin = require_orthanc()
        self.folder = folder
        self.http_port, self.dicom_port = free_port(), free_port()
        self.users = users or {}
        config = {
            "Name": "anomed-test",
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            # Orthanc binds its DICOM port on every interface; the tests speak DICOMweb only,
            # so the DIMSE server stays off (HTTP: RemoteAccessAllowed false, loopback only)
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items()), None)

    def start(self) -> Orthanc:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=log)
        log.close()
        for _ in range(600):  # up to a minute on a busy machine
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()}")
            try:
                if requests.get(f"{self.base}/system", auth=self.auth, timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def upload(self, paths: list[Path]) -> None:
        """POST each DICOM file to Orthanc's REST API (as a modality's C-STORE would land)."""
        for path in paths:
            answer = requests.post(
                f"{self.base}/instances", data=path.read_bytes(), auth=self.auth, timeout=30
            )
            answer.raise_for_status()

    def series_of(self, study_uid: str) -> list[dict]:
        """QIDO-RS series of a study, each as {keyword: first value}."""
        r = requests.get(
            f"{self.dicomweb}/studies/{study_uid}/series",
            params=[
                ("includefield", f)
                for f in (
                    "Manufacturer",
                    "SeriesDescription",
                    "Modality",
                    "NumberOfSeriesRelatedInstances",
                )
            ],
            auth=self.auth,
            timeout=30,
        )
        r.raise_for_status()
        return [_plain(item) for item in (r.json() if r.content else [])]


def _plain(item: dict) -> dict:
    from pydicom.datadict import keyword_for_tag

    out = {}
    for tag, value in item.items():
        values = value.get("Value") or [None]
        out[keyword_for_tag(int(tag, 16)) or tag] = values[0]
    return out
