import pytest
import torch
import torch.nn.functional as F

from anomed.memory_bank import MemoryBank, greedy_coreset


@pytest.mark.parametrize(("chunk", "bank_chunk"), [(7, 5), (1000, 1000), (3, 64)])
def test_cosine_distance_matches_brute_force(chunk, bank_chunk):
    g = torch.Generator().manual_seed(0)
    bank = [torch.randn(50, 8, generator=g), torch.randn(31, 8, generator=g)]
    query = [torch.randn(2, 13, 8, generator=g), torch.randn(2, 13, 8, generator=g)]
    got = MemoryBank.build(bank).score(query, chunk=chunk, bank_chunk=bank_chunk)
    for q, b, d in zip(query, bank, got, strict=True):
        ref = (1 - F.normalize(q, dim=-1) @ F.normalize(b, dim=-1).t()).amin(-1)
        torch.testing.assert_close(d, ref, rtol=1e-5, atol=1e-5)


def test_euclidean_distance_matches_cdist():
    g = torch.Generator().manual_seed(1)
    bank, query = torch.randn(40, 6, generator=g), torch.randn(1, 9, 6, generator=g)
    got = MemoryBank.build([bank], metric="euclidean").score([query], chunk=4, bank_chunk=7)[0]
    torch.testing.assert_close(
        got, torch.cdist(query[0], bank).amin(-1)[None], rtol=1e-5, atol=1e-5
    )


def test_coreset_subset_and_deterministic():
    feats = torch.randn(100, 16, generator=torch.Generator().manual_seed(2))
    idx = greedy_coreset(feats, 0.1, seed=3)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10
    assert torch.equal(idx, greedy_coreset(feats, 0.1, seed=3))
    assert torch.equal(greedy_coreset(feats, 1.0), torch.arange(100))
    bank = MemoryBank.build([feats], coreset=0.1, seed=3)
    assert bank.banks[0].shape == (10, 16)


def test_round_trip_through_tensors():
    bank = MemoryBank.build([torch.randn(5, 4), torch.randn(3, 4)], metric="euclidean")
    again = MemoryBank.from_tensors(bank.to_tensors())
    assert again.metric == "euclidean"
    assert all(torch.equal(a, b) for a, b in zip(again.banks, bank.banks, strict=True))
