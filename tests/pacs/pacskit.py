"""Helpers of the PACS tests (a module of its own: `conftest` is ambiguous in the full suite)."""

from __future__ import annotations

from pathlib import Path

from orthanckit import Orthanc

from anomed.pacs import PacsClient, RetryPolicy, WatchConfig, Watcher


def make_watcher(
    detector, server: Orthanc, data_dir: Path, on_event=None, on_retry=None, log=None, **cfg
) -> Watcher:
    """A --once watcher on `server` with quick retries (the PACS tests' default)."""
    retry = cfg.pop("retry", RetryPolicy(tries=4, base_s=0.2, max_s=1.0))
    user = cfg.pop("user", ":".join(server.auth) if server.auth else None)
    client = PacsClient(server.dicomweb, user=user, retry=retry, on_retry=on_retry)
    config = WatchConfig(data_dir=data_dir, **({"once": True, "stable_s": 0} | cfg))
    return Watcher(detector, client, config, log=log or (lambda line: None), on_event=on_event)


def anomed_series(server: Orthanc, study_uid: str) -> list[dict]:
    """The series anomed created in a study (QIDO), each with its instance count."""
    return [s for s in server.series_of(study_uid) if s.get("Manufacturer") == "anomed"]
