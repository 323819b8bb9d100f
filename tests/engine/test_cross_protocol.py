"""The cross-sequence / cross-view protocol (anomed.engine.volumes.cross_protocol)."""

from __future__ import annotations

from types import SimpleNamespace

from anomed.data.phantoms.heads import VolumePhantomConfig, write_phantom_volumes
from anomed.engine.volumes import cross_protocol


def test_cross_protocol_never_reuses_slices_of_other_cases(tmp_path):
    """A second run into the same output with other cases used to evaluate on the first
    run's slices (the slice folder was reused whenever it existed)."""
    seen = []

    def evaluate(checkpoint, data, out):
        seen.append((tmp_path / data / "README.txt").read_text())
        return SimpleNamespace(metrics={"pixel_auroc": None, "image_auroc": None})

    for name, seed in (("cases_a", 0), ("cases_b", 1)):
        write_phantom_volumes(
            tmp_path / name, VolumePhantomConfig(2, seed=seed, shape=(16, 16, 16))
        )
        args = ("ckpt", tmp_path / name, tmp_path / "out", ("t1",), ("axial",))
        cross_protocol(*args, evaluate=evaluate, log=lambda _: None)
    assert seen[0].startswith("t1 axial slices of cases_a")
    assert seen[1].startswith("t1 axial slices of cases_b")
    cross_protocol(*args, evaluate=evaluate, log=lambda _: None)  # same cases: reused
    assert seen[2] == seen[1]
