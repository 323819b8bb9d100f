"""Fixtures of the fuzz suite: throw-away copies of the shared run and dataset, and the
hypothesis profiles (default: few derandomized examples; ANOMED_FUZZ_PROFILE=deep for a hunt)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from anomed.cli import main

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "fuzz",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "deep", max_examples=400, deadline=None, database=None, suppress_health_check=_QUIET
)
settings.load_profile(os.environ.get("ANOMED_FUZZ_PROFILE", "fuzz"))


@pytest.fixture(scope="session")
def fuzz_run(phantom_root, tmp_path_factory) -> Path:
    """One tiny trained run for the whole fuzz suite (64 px, 1 epoch: its forward pass is ~3x
    cheaper than the 112-px run of tests/conftest.py, and the suite runs ~50); read-only."""
    out = tmp_path_factory.mktemp("fuzz-run") / "run"
    argv = ["-q", "train", "--data", str(phantom_root), "--k", "2", "--epochs", "1"]
    argv += ["--image-size", "64", "--set", "data.n_val=2", "--output", str(out)]
    assert main(argv) == 0
    return out


@pytest.fixture
def run_copy(fuzz_run, tmp_path) -> Path:
    """A throw-away copy of the shared run, to tamper with."""
    return Path(shutil.copytree(fuzz_run, tmp_path / "run"))


@pytest.fixture
def data_copy(phantom_root, tmp_path) -> Path:
    """A throw-away copy of the phantom dataset (cases that could delete their inputs)."""
    return Path(shutil.copytree(phantom_root, tmp_path / "data"))
