"""Fixtures of the service tests: a tiny checkpoint (the test files and live server are in
servekit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomed.config import BackboneConfig, RunConfig
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
