"""Evaluation reports (anomed.engine.reports): decision figures never count a NaN as normal."""

from __future__ import annotations

import numpy as np

from anomed.engine.reports import _decisions_text, decision_metrics


def test_decision_metrics_at_a_threshold_by_hand():
    labels = np.array([0, 0, 1, 1])
    out = decision_metrics(labels, np.array([0.1, 0.6, 0.7, 0.2]), 0.5, "calibrated")
    assert out == {"acc_calibrated": 0.5, "f1_calibrated": 0.5}


def test_a_nan_score_gives_no_accuracy_instead_of_a_normal_decision():
    """A NaN score used to count as "normal": three normals, one of them NaN, read 100 %."""
    labels = np.array([0, 0, 0, 1])
    out = decision_metrics(labels, np.array([0.1, np.nan, 0.2, 0.9]), 0.5, "calibrated")
    assert out == {"acc_calibrated": None, "f1_calibrated": None}
    payload = {"n_test": 4, "n_test_abnormal": 1, "n_pixel_images": 0, "threshold": 0.5}
    payload.update(target_fpr=0.05, **out, **{"acc_0.5": None, "f1_0.5": None})
    text = _decisions_text(payload, probabilities=True)
    assert "accuracy and F1 undefined" in text and "Decisions at 0.5" not in text
