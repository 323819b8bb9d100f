import pytest
import torch

from anomed.adapters import LinearAdapters


def test_one_linear_map_per_layer():
    adapters = LinearAdapters(3, in_dim=16, out_dim=8)
    tokens = [torch.randn(2, 5, 16) for _ in range(3)]
    out = adapters(tokens)
    assert [o.shape for o in out] == [(2, 5, 8)] * 3
    for layer, x, y in zip(adapters.layers, tokens, out, strict=True):
        torch.testing.assert_close(y, x @ layer.weight.t() + layer.bias)


def test_layer_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="expected 2 tapped layers, got 3"):
        LinearAdapters(2, 4, 4)([torch.randn(1, 1, 4)] * 3)
