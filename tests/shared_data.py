"""The real public datasets beside the project (../shared/data), skipped where absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mediclip"


def shared_dataset(name: str) -> Path:
    """The shared dataset `name` (brainmri, busi); skips the test when it is not there."""
    path = SHARED_DATA / name
    if not (path / "samples" / "test.json").is_file():
        pytest.skip(f"shared data {path} not present")
    return path
