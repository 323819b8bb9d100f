import pytest
import torch
import torch.nn.functional as F

from anomed.memory_bank import MemoryBank, greedy_coreset, nearest_distance


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    bank = [torch.randn(50, 8, generator=g), torch.randn(31, 12, generator=g)]
    query = [torch.randn(2, 13, 8, generator=g), torch.randn(2, 13, 12, generator=g)]
    return bank, query


def _cosine_ref(q, b):
    return (1 - F.normalize(q, dim=-1) @ F.normalize(b, dim=-1).t()).amin(-1)


# chunks that divide nothing, are smaller than the data, or larger than it
@pytest.mark.parametrize(("chunk", "bank_chunk"), [(7, 5), (1, 1), (3, 64), (4096, 4096)])
def test_cosine_distance_matches_brute_force(chunk, bank_chunk):
    bank, query = _data()
    got = MemoryBank.build(bank).score(query, chunk=chunk, bank_chunk=bank_chunk)
    for q, b, d in zip(query, bank, got, strict=True):
        assert d.shape == q.shape[:-1] and d.dtype == torch.float32
        torch.testing.assert_close(d, _cosine_ref(q, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("chunk", "bank_chunk"), [(4, 7), (26, 31), (5, 1000)])
def test_euclidean_distance_matches_cdist(chunk, bank_chunk):
    bank, query = _data(1)
    got = MemoryBank.build(bank, distance="euclidean").score(query, chunk, bank_chunk)
    for q, b, d in zip(query, bank, got, strict=True):
        torch.testing.assert_close(d, torch.cdist(q, b).amin(-1), rtol=1e-5, atol=1e-5)


def test_distance_to_a_bank_member_is_zero_and_cosine_ignores_scale():
    bank, _ = _data(2)
    query = [3.0 * bank[0][:5].unsqueeze(0), bank[1][-4:].unsqueeze(0).half()]
    got = MemoryBank.build(bank).score(query, chunk=2, bank_chunk=3)
    assert all(float(d.abs().max()) < 1e-3 for d in got)  # half-precision query: ~1e-4
    assert float(got[0].abs().max()) < 1e-6


def test_nearest_distance_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    query = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    cos = nearest_distance(query, bank, "cosine", chunk=2, bank_chunk=1)
    torch.testing.assert_close(cos, torch.tensor([1 - 2**-0.5, 1.0, 0.0]))
    l2 = nearest_distance(query, bank, "euclidean", chunk=2, bank_chunk=1)
    torch.testing.assert_close(l2, torch.tensor([1.0, 2**0.5, 1.0]))


def test_coreset_of_one_keeps_everything():
    feats = torch.randn(40, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(greedy_coreset(feats, 1.0), torch.arange(40))
    bank = MemoryBank.build([feats], coreset=1.0, distance="euclidean")
    assert torch.equal(bank.banks[0], feats)


def test_coreset_is_a_deterministic_subset_of_the_bank():
    # 200 features > 128: the search runs on the random projection
    feats = torch.randn(300, 200, generator=torch.Generator().manual_seed(4))
    idx = greedy_coreset(feats, 0.1, seed=3)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30
    assert torch.equal(idx, greedy_coreset(feats, 0.1, seed=3))
    kept = MemoryBank.build([feats], coreset=0.1, seed=3, distance="euclidean").banks[0]
    assert kept.shape == (30, 200)
    assert all(bool((row == feats).all(1).any()) for row in kept)  # every row is a bank row
    unit = MemoryBank.build([feats], coreset=0.1, seed=3).banks[0]  # cosine: unit rows kept
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.cdist(unit, F.normalize(feats, dim=-1), compute_mode=exact).amin(1).max() < 1e-6


def test_coreset_spreads_over_clusters():
    # two far clusters: a k-center subset of 2 points takes one from each
    g = torch.Generator().manual_seed(5)
    feats = torch.cat([torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g) + 100])
    idx = greedy_coreset(feats, 0.02, seed=0)
    assert sorted(int(i) // 50 for i in idx) == [0, 1]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        greedy_coreset(torch.randn(5, 3), 0.0)
    with pytest.raises(ValueError, match="distance"):
        MemoryBank.build([torch.randn(5, 3)], distance="manhattan")
    with pytest.raises(ValueError, match="non-empty"):
        MemoryBank.build([torch.randn(0, 3)])
    with pytest.raises(ValueError, match="query layers"):
        MemoryBank.build([torch.randn(5, 3)]).score([torch.randn(1, 2, 3)] * 2)


def test_round_trip_through_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    bank, query = _data(6)
    original = MemoryBank.build(bank, distance="euclidean")
    save_file(original.to_tensors(), tmp_path / "bank.safetensors")
    again = MemoryBank.from_tensors(load_file(tmp_path / "bank.safetensors"))
    assert again.distance == "euclidean"
    assert all(torch.equal(a, b) for a, b in zip(again.banks, original.banks, strict=True))
    for a, b in zip(again.score(query), original.score(query), strict=True):
        assert torch.equal(a, b)
