"""The traceable pieces of an export: the memory-bank search and the refusals."""

import pytest
import torch

from anomed.errors import AnomedError
from anomed.export.graph import GraphBank, freeze_for_export
from anomed.memory_bank import MemoryBank
from anomed.methods import create_method


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_graph_bank_matches_the_memory_bank(distance):
    gen = torch.Generator().manual_seed(0)
    layers = [torch.randn(300, 16, generator=gen), torch.randn(50, 8, generator=gen)]
    bank = MemoryBank(layers, distance)
    query = [torch.randn(3, 20, 16, generator=gen), torch.randn(3, 20, 8, generator=gen)]
    query[0][0, 0] = layers[0][7]  # a query equal to a bank row: distance ~0 both ways
    graph = GraphBank(bank, chunk=64)  # several chunks: the running minimum is exercised
    for got, want in zip(graph.score(query), bank.score(query), strict=True):
        assert got.shape == (3, 20)
        torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-4)
    assert float(graph.score(query)[0][0, 0]) < 2e-3


def test_unknown_and_test_set_normalised_methods_are_refused(tiny_backbone):
    mvfa = create_method("mvfa", tiny_backbone, {"normalization": "paper"})
    with pytest.raises(AnomedError, match="mvfa: cannot be exported to ONNX with normalization"):
        freeze_for_export(mvfa)
    mvfa.name = "mystery"
    with pytest.raises(AnomedError, match="mystery: no ONNX export recipe"):
        freeze_for_export(mvfa)


def test_freezing_a_copy_leaves_the_method_alone(tiny_backbone):
    method = create_method("mediclip", tiny_backbone, {"n_ctx": 4}).eval()
    graph = freeze_for_export(method)
    assert graph.method is not method and graph.method.backbone is method.backbone
    assert isinstance(method.prompts, torch.nn.Module) and hasattr(method.prompts, "ctx")
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        want = method(images)
        amap, score = graph(tiny_backbone.normalize(images))
    torch.testing.assert_close(amap, want.anomaly_map)
    torch.testing.assert_close(score, want.image_score)
    assert "normalize" not in vars(tiny_backbone)  # the switch lasts one graph call only
