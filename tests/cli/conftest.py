"""CLI tests share one tiny trained run (MediCLIP, 112 px, 2 epochs) per session."""

import pytest

from anomed.cli import main


@pytest.fixture(scope="session")
def checkpoint(phantom_root, tmp_path_factory):
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
