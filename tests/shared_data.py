"""The real public datasets beside the project (../shared/data), skipped where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# ANOMED_SHARED_DATA: the data folder for a checkout elsewhere (e.g. a git worktree)
_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_DATA = Path(os.environ.get("ANOMED_SHARED_DATA") or _DEFAULT) / "mediclip"


def shared_dataset(name: str) -> Path:
    """The shared dataset `name` (brainmri, busi); skips the test when it is not there."""
    path = SHARED_DATA / name
    if not (path / "samples" / "test.json").is_file():
        pytest.skip(f"shared data {path} not present")
    return path
