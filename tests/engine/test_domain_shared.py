"""The domain guard on the shared real data: brain MRI and breast ultrasound told apart.

Random-init tiny backbone (no pretrained weights on this machine): the figures show what the
guard's token and pixel statistics do alone; real CLIP embeddings add the semantic block."""

from __future__ import annotations

import pytest
from shared_data import shared_dataset

from anomed.cli import main
from anomed.data.layouts import load_dataset
from anomed.engine.detector import load_detector

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _flagged(detector, samples) -> float:
    rows = detector.predict([str(s.image) for s in samples], keep_maps=False)
    assert all(r.ok and r.in_domain is not None for r in rows)
    return sum(r.in_domain is False for r in rows) / len(rows)


@pytest.mark.parametrize(("own", "other"), [("brainmri", "busi"), ("busi", "brainmri")])
def test_a_detector_flags_the_other_modality_and_not_its_own(own, other, tmp_path):
    """Issue 23: >= 95 % of the other set flagged, <= 5 % of its own test images."""
    out = tmp_path / own
    args = ["-q", "train", "--data", str(shared_dataset(own)), "--method", "memorybank"]
    assert main([*args, "--k", "16", "--image-size", "112", "--output", str(out)]) == 0
    detector = load_detector(out, "cpu", batch_size=32)
    own_test = load_dataset(shared_dataset(own)).test
    other_test = load_dataset(shared_dataset(other)).test
    own_normal = _flagged(detector, [s for s in own_test if s.label == 0])
    own_abnormal = _flagged(detector, [s for s in own_test if s.label == 1])
    flagged_other = _flagged(detector, other_test)
    print(f"{own} detector flags: own normal {own_normal:.3f}, own abnormal {own_abnormal:.3f}, "
          f"{other} {flagged_other:.3f}")  # fmt: skip
    assert own_normal <= 0.05 and own_abnormal <= 0.05
    assert flagged_other >= 0.95
