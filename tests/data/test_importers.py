"""Raw dataset import (anomed.data.importers): which mask belongs to which image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anomed.data.importers import import_dataset
from anomed.errors import AnomedError


def _write(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 16), value, np.uint8))


def test_two_images_sharing_a_stem_with_a_mask_are_refused_not_guessed(tmp_path):
    """`a.png`, `a.jpg` and `a_mask.png`: the mask was copied for both images."""
    raw = tmp_path / "raw"
    for i in range(2):
        _write(raw / "normal" / f"n{i}.png")
    _write(raw / "malignant" / "a.png", 200)
    _write(raw / "malignant" / "a.jpg", 100)
    _write(raw / "malignant" / "a_mask.png", 255)
    with pytest.raises(AnomedError, match=r"a\.jpg, a\.png share the stem 'a'.*a_mask\.png"):
        import_dataset(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (raw / "malignant" / "a.jpg").rename(raw / "malignant" / "b.jpg")  # renamed: imports
    summary = import_dataset(raw, tmp_path / "out")
    assert summary is not None
