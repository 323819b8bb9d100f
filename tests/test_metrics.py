"""Metrics: hand-computed values, None cases, agreement with scikit-learn and the MVTec AUPRO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn import metrics as skm

from anomed.metrics import (
    METRIC_KEYS,
    MetricAccumulator,
    aupro,
    average_precision,
    compute_metrics,
    f1_max,
    format_metrics_table,
    image_auroc,
    pixel_metrics,
)

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


def test_image_metrics_by_hand():
    # Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert image_auroc(LABELS, SCORES) == pytest.approx(0.75)
    # Descending: 0.8 (P=1, R=.5), 0.4 (P=.5), 0.35 (P=2/3, R=1) -> AP = .5*1 + .5*2/3.
    assert average_precision(LABELS, SCORES) == pytest.approx(0.5 + 1 / 3)
    # F1 at 0.8: 2/3; at 0.35: 2*(2/3)*1 / (5/3) = 0.8; at 0.1: 2/3.
    assert f1_max(LABELS, SCORES) == pytest.approx(0.8)


def test_image_metrics_accept_torch():
    labels, scores = torch.tensor(LABELS), torch.tensor(SCORES, dtype=torch.bfloat16)
    assert image_auroc(labels, scores) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "labels, scores",
    [([1, 1, 1], [0.2, 0.5, 0.9]), ([0, 0], [0.1, 0.3]), ([], []), ([0, 1], [0.1, np.nan])],
    ids=["only-abnormal", "only-normal", "empty", "nan"],
)
def test_image_metrics_undefined_are_none(labels, scores):
    for fn in (image_auroc, average_precision, f1_max):
        assert fn(labels, scores) is None


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="same length"):
        image_auroc([0, 1, 1], [0.1, 0.2])


def _random_pixels(seed: int, n: int = 6, size: int = 24, levels: int | None = None):
    """Masks with a few blobs each (some images empty) and noisy maps that favour the blobs."""
    rng = np.random.default_rng(seed)
    masks = ndimage.gaussian_filter(rng.random((n, size, size)), (0, 2, 2)) > 0.56
    masks[0] = False  # one normal image
    maps = rng.random((n, size, size)) + 0.3 * masks
    if levels is not None:  # quantised maps create ties between normal and anomalous pixels
        maps = np.round(maps * levels) / levels
    return masks, maps.astype(np.float32)


@pytest.mark.parametrize("levels", [None, 8])
def test_pixel_metrics_match_sklearn(levels):
    masks, maps = _random_pixels(1, levels=levels)
    got = pixel_metrics(masks, maps)
    y, s = masks.ravel(), maps.ravel()
    precision, recall, _ = skm.precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    assert got["pixel_auroc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-9)
    assert got["pixel_ap"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-9)
    assert got["pixel_f1_max"] == pytest.approx(f1.max(), abs=1e-9)


def test_pixel_metrics_none_without_two_classes():
    maps = np.random.default_rng(0).random((2, 8, 8))
    assert pixel_metrics(np.zeros((2, 8, 8), bool), maps) == dict.fromkeys(METRIC_KEYS[3:])
    assert aupro(np.ones((2, 8, 8), bool), maps) is None  # no normal pixels
    assert aupro(np.zeros((2, 8, 8), bool), maps) is None  # no regions
    nan_maps = maps.copy()
    nan_maps[0, 0, 0] = np.nan
    assert aupro(np.eye(8, dtype=bool)[None].repeat(2, 0), nan_maps) is None


def test_pixel_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        pixel_metrics(np.zeros((2, 8, 8), bool), np.zeros((2, 8, 9)))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(np.zeros((2, 8, 8), bool), np.zeros((2, 8, 8)), fpr_limit=0.0)


def _reference_aupro(masks, maps, fpr_limit):
    """MVTec AD's algorithm, literally: sort every pixel, cumulate FPR and PRO, trapezoid."""
    fp_change, pro_change, n_regions = [], [], 0
    for mask in masks:
        labeled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        n_regions += n
        change = np.zeros(mask.shape)
        for k in range(1, n + 1):
            change[labeled == k] = 1.0 / np.sum(labeled == k)
        fp_change.append((labeled == 0).ravel())
        pro_change.append(change.ravel())
    fp, pro = np.concatenate(fp_change), np.concatenate(pro_change)
    scores = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    fprs = np.cumsum(fp[order]) / fp.sum()
    pros = np.cumsum(pro[order]) / n_regions
    keep = np.r_[np.diff(scores[order]) != 0, True]
    x, y = np.r_[0.0, fprs[keep]], np.r_[0.0, pros[keep]]
    i = np.searchsorted(x, fpr_limit, "right")  # first point past the limit
    y_cut = y[i - 1] + (y[i] - y[i - 1]) * (fpr_limit - x[i - 1]) / (x[i] - x[i - 1])
    x, y = np.r_[x[:i], fpr_limit], np.r_[y[:i], y_cut]
    return np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / fpr_limit


@pytest.mark.parametrize("levels", [None, 6])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05])
def test_aupro_matches_mvtec_reference(levels, fpr_limit):
    masks, maps = _random_pixels(2, levels=levels)
    expected = _reference_aupro(masks, maps, fpr_limit)
    assert 0.05 < expected < 0.95  # a case that is neither trivial nor hopeless
    assert aupro(masks, maps, fpr_limit) == pytest.approx(expected, abs=1e-9)


def test_aupro_perfect_and_reversed_maps():
    masks, _ = _random_pixels(3)
    assert aupro(masks, masks.astype(np.float32)) == pytest.approx(1.0)
    assert aupro(masks, 1.0 - masks.astype(np.float32)) == pytest.approx(0.0)


def test_aupro_one_region_found_one_missed_is_half():
    # Two regions of very different size: the small one scores 1, the big one 0, the normal
    # pixels in between. PRO is 0.5 from FPR 0 on, so the normalised area is 0.5 - region size
    # does not matter, which is the point of a per-region metric.
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 2:4, 2:4] = True  # 4 pixels, found
    masks[1, 0:12, 0:12] = True  # 144 pixels, missed
    maps = rng.uniform(0.1, 0.9, masks.shape)
    maps[0][masks[0]] = 1.0
    maps[1][masks[1]] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.5)
    assert pixel_metrics(masks, maps)["pixel_auroc"] < 0.1  # pixel-pooled view: mostly missed


def test_aupro_accepts_images_of_different_sizes():
    masks, maps = _random_pixels(4, n=2)
    big_mask, big_map = np.kron(masks[1], np.ones((2, 2), bool)), np.kron(maps[1], np.ones((2, 2)))
    got = aupro([masks[0], big_mask], [maps[0], big_map])
    assert got == pytest.approx(_reference_aupro([masks[0], big_mask], [maps[0], big_map], 0.3))


def test_compute_metrics_keys_and_ranges():
    masks, maps = _random_pixels(5)
    labels = masks.any(axis=(1, 2)).astype(int)
    labels[1] = 0  # keep two classes even if every random image got a blob
    out = compute_metrics(labels, maps.max(axis=(1, 2)), masks, maps)
    assert tuple(out) == METRIC_KEYS
    assert all(0.0 <= v <= 1.0 for v in out.values())
    no_pixels = compute_metrics(labels, maps.max(axis=(1, 2)))
    assert [no_pixels[k] for k in METRIC_KEYS[3:]] == [None] * 4


def test_accumulator_equals_compute_metrics_on_concatenation():
    masks, maps = _random_pixels(6, n=8)
    labels = masks.any(axis=(1, 2)).astype(int)
    scores = maps.mean(axis=(1, 2))
    acc = MetricAccumulator()
    acc.update(labels[:3], scores[:3], masks[:3], maps[:3])
    acc.update(torch.from_numpy(labels[3:]), torch.from_numpy(scores[3:]),
               torch.from_numpy(masks[3:]), torch.from_numpy(maps[3:]))  # fmt: skip
    assert acc.num_samples == 8
    assert acc.compute() == compute_metrics(labels, scores, masks, maps)


def test_accumulator_pixel_rule_for_missing_masks():
    masks, maps = _random_pixels(7, n=6)
    masks[1] = False  # a normal image
    labels = masks.any(axis=(1, 2)).astype(int)
    assert labels.tolist() == [0, 0, 1, 1, 1, 1]
    scores = maps.mean(axis=(1, 2))
    acc = MetricAccumulator()
    # The normal image 1 and abnormal image 2 come without mask files.
    has_mask = np.array([True, False, False, True, True, True])
    acc.update(labels, scores, masks, maps, has_mask=has_mask)
    keep = [0, 1, 3, 4, 5]  # normals count as all-zero masks; abnormal image 2 is left out
    expected = compute_metrics(labels, scores, masks[keep], maps[keep])
    assert acc.compute() == expected
    assert acc.skipped_pixel_samples == 1


def test_accumulator_without_any_masks_gives_image_metrics_only():
    acc = MetricAccumulator()
    maps = np.random.default_rng(0).random((4, 8, 8))
    acc.update(LABELS, SCORES, masks=None, maps=maps)
    out = acc.compute()
    assert out["image_auroc"] == pytest.approx(0.75)
    assert [out[k] for k in METRIC_KEYS[3:]] == [None] * 4
    assert acc.skipped_pixel_samples == 2
    acc.reset()
    assert acc.compute() == dict.fromkeys(METRIC_KEYS)


def test_format_metrics_table():
    table = format_metrics_table(
        {"brain": {"image_auroc": 0.91234, "pixel_auroc": None}, "liver": {"image_auroc": 1.0}},
        keys=["image_auroc", "pixel_auroc"],
    )
    assert table.splitlines() == [
        "|  | image_auroc | pixel_auroc |",
        "|---|---:|---:|",
        "| brain | 91.2 | N/A |",
        "| liver | 100.0 | — |",
    ]
