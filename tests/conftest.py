"""Shared fixtures: a tiny random-init backbone, a tiny phantom dataset and a tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomed.backbone import BackboneConfig, load_backbone
from anomed.cli import main
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset


@pytest.fixture(scope="session")
def tiny_backbone():
    return load_backbone(BackboneConfig(model="anomed-tiny", image_size=112))


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "phantom"
    cfg = PhantomConfig(n_train=12, n_test_normal=3, n_test_abnormal=3, image_size=96, seed=3)
    write_phantom_dataset(root, cfg)
    return root


@pytest.fixture(scope="session")
def checkpoint(phantom_root, tmp_path_factory):
    """One tiny trained MediCLIP run (112 px, 2 epochs) shared by the CLI tests; read-only."""
    out = tmp_path_factory.mktemp("run") / "ckpt"
    code = main(
        [
            "-q",
            "train",
            "--data",
            str(phantom_root),
            "--k",
            "2",
            "--epochs",
            "2",
            "--image-size",
            "112",
            "--output",
            str(out),
            "--set",
            "train.val_every=1",
            "--set",
            "data.n_val=2",
        ]
    )
    assert code == 0
    return out
