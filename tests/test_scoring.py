import torch

from anomed.scoring import gaussian_smooth, layer_maps, patch_text_probs, tokens_to_grid


def test_probs_sum_to_one_and_follow_cosine():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, 2, 2)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    probs = patch_text_probs(patches, text, temperature=0.5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2))
    expected = torch.tensor([1.0, 0.0]).div(0.5).softmax(0)
    torch.testing.assert_close(probs[0, 0], expected)
    torch.testing.assert_close(probs[0, 1], expected.flip(0))


def test_per_image_text_features():
    patches = torch.randn(3, 4, 8)
    text = torch.randn(3, 2, 8)
    probs = patch_text_probs(patches, text, 0.07)
    torch.testing.assert_close(probs[1], patch_text_probs(patches[1:2], text[1], 0.07)[0])


def test_grid_and_upsampling_shapes():
    tokens = torch.arange(8.0).reshape(1, 4, 2)  # (B, N, C)
    grid = tokens_to_grid(tokens, (2, 2))
    assert grid.shape == (1, 2, 2, 2) and grid[0, 1, 0, 1] == 3.0
    assert layer_maps([tokens, tokens], (2, 2), 8).shape == (2, 1, 2, 8, 8)


def test_smoothing_keeps_constants_and_spreads_peaks():
    flat = torch.full((1, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_smooth(flat, 1.5), flat)
    peak = torch.zeros(1, 9, 9)
    peak[0, 4, 4] = 1.0
    out = gaussian_smooth(peak, 1.0)
    assert out[0, 4, 4] < 1.0 and out[0, 4, 5] > 0 and abs(float(out.sum()) - 1.0) < 1e-3


def test_window_subsets_cover_the_grid():
    from anomed.scoring import window_subsets

    subsets = window_subsets((3, 4), 2)
    assert subsets.shape == (2 * 3, 4)
    assert subsets[0].tolist() == [0, 1, 4, 5] and subsets[-1].tolist() == [6, 7, 10, 11]


def test_harmonic_aggregation_by_hand():
    from anomed.scoring import harmonic_aggregate, harmonic_mean

    subsets = torch.tensor([[0, 1], [1, 2]])  # patch 1 is in both windows
    scores = torch.tensor([[0.5, 0.25]])
    out = harmonic_aggregate(scores, subsets, n_patches=4)
    expected = torch.tensor([[0.5, 2 / (2 + 4), 0.25, 0.0]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(
        harmonic_mean([torch.tensor(0.5), torch.tensor(0.25)]), torch.tensor(2 / 6)
    )


def test_set_minmax_keeps_a_nan_visible():
    """MVFA's min-max turned a set holding one NaN into all zeros: a threshold was calibrated
    on them and every image read "normal"."""
    import numpy as np

    from anomed.scoring import set_minmax

    assert np.allclose(set_minmax(np.array([1.0, 3.0, 2.0])), [0.0, 1.0, 0.5])
    assert not set_minmax(np.full(3, 7.0)).any()  # a constant set -> 0
    assert np.isnan(set_minmax(np.array([1.0, np.nan, 2.0]), 1e-4)).all()
    assert np.isnan(set_minmax(np.array([1.0, np.inf]))).all()
