"""The INT8 accuracy gates: each measure computed by hand, and the failed gate named."""

import numpy as np
import pytest

from anomed.errors import AnomedError
from anomed.export.gates import Gates, centred_cosine, gate_check, rank_correlation


def test_centred_cosine_is_not_fooled_by_a_constant_offset():
    ref = 0.5 + np.array([0.01, 0.02, -0.02, -0.01])
    assert np.dot(ref, ref[::-1]) / np.dot(ref, ref) > 0.99  # a plain cosine: "alike"
    assert centred_cosine(ref, ref[::-1]) == pytest.approx(-1.0)  # centred: opposite
    assert centred_cosine(ref, ref + 0.0) == pytest.approx(1.0)
    assert np.isnan(centred_cosine(ref, np.array([np.nan, 0, 0, 0])))


def test_rank_correlation_is_spearman_and_nan_fails():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    assert rank_correlation(ref, ref * 10 + 3) == pytest.approx(1.0)  # order only
    assert rank_correlation(ref, ref[::-1]) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(ref, np.array([0.1, np.nan, 0.3, 0.4])))


def _check(got_scores, got_maps, gates=None):
    scores = np.array([0.1, 0.2, 0.8, 0.9], np.float32)
    maps = np.zeros((4, 8, 8), np.float32)
    masks = np.zeros((4, 8, 8), bool)
    masks[2:, 2:5, 2:5] = True
    maps[masks] = 1.0
    maps += np.linspace(0, 0.1, 64, dtype=np.float32).reshape(8, 8)
    labels = np.array([0, 0, 1, 1])
    got = (got_scores(scores), got_maps(maps))
    names = ["a.png", "b.png", "c.png", "d.png"]
    gates = gates or Gates()
    return gate_check((scores, maps), got, labels, masks, 0.5, gates, "test", "4 images", names)


def test_a_faithful_graph_passes_and_a_reordered_one_names_the_gate():
    ok = _check(lambda s: s + 1e-4, lambda m: m + 1e-4)
    assert ok.passed and ok.rank_corr == pytest.approx(1.0) and ok.auroc_drop == 0.0
    assert ok.decisions_equal == 4 and ok.decisions_changed == []
    bad = _check(lambda s: s[[2, 1, 0, 3]], lambda m: m)  # image 0 and 2 swap scores
    assert not bad.passed and bad.decisions_changed == ["a.png", "c.png"]
    assert bad.image_auroc_fp32 == 1.0 and bad.image_auroc == 0.5
    assert any(f.startswith("--gate-rank-corr 0.99 (measured") for f in bad.failed)
    assert any(f.startswith("--gate-auroc-drop 1 (measured 50.00 points)") for f in bad.failed)
    assert "FAILED --gate-rank-corr" in bad.line()
    flat = _check(lambda s: s, lambda m: np.zeros_like(m) + 0.5)  # maps lost
    assert flat.failed and flat.failed[0].startswith("--gate-map-cosine 0.99")


def test_gates_are_validated():
    with pytest.raises(AnomedError, match="--gate-rank-corr 2.0: must be between -1 and 1"):
        Gates(rank_corr=2.0)
    with pytest.raises(AnomedError, match="--gate-auroc-drop -1.0"):
        Gates(auroc_drop=-1.0)
