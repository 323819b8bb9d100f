"""The feature cache must train side-adapter methods exactly as the uncached loop does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomed.config import TrainConfig, from_dict
from anomed.data.datasets import SupportSet
from anomed.data.phantoms.brain import make_brain_slice
from anomed.engine.cache import build_feature_cache
from anomed.engine.evaluate import evaluate_items, run_batches
from anomed.engine.train import fit
from anomed.errors import AnomedError
from anomed.methods.base import create_method

CPU = torch.device("cpu")
SIZE = 112


def _support(labelled: bool) -> SupportSet:
    images = []
    for i in range(4):
        image, _ = make_brain_slice(np.random.default_rng(i), SIZE)
        images.append(np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image)
    lesion = np.zeros((SIZE, SIZE), bool)
    lesion[40:60, 40:60] = True
    empty = np.zeros((SIZE, SIZE), bool)
    if labelled:
        return SupportSet(images, [0, 0, 1, 1], [empty, empty, lesion, lesion], [True] * 4, "brain")
    return SupportSet(images, [0] * 4, [empty] * 4, [True] * 4, "brain")


def _train(name: str, backbone, cache: bool, epochs: int = 3, **train) -> tuple[list, object]:
    torch.manual_seed(0)
    method = create_method(name, backbone, {"epochs": epochs})
    support = _support(labelled=not method.normal_only)
    method.support, method.class_name = support, support.clsname
    train_set = method.train_dataset([support], seed=0)
    cfg = TrainConfig(select="last", cache_features=cache, **train)
    result = fit(method, train_set, [], cfg, epochs, 2, CPU, progress=False, log=lambda _: None)
    return [row["loss"] for row in result.history], method


@pytest.mark.parametrize("name", ["mediclip", "condprompt"])
def test_cached_synthesis_trains_exactly_like_fresh_synthesis(tiny_backbone, name):
    fresh, _ = _train(name, tiny_backbone, cache=False)
    cached, _ = _train(name, tiny_backbone, cache=True)
    assert cached == pytest.approx(fresh, abs=1e-5)


def test_cached_augmented_views_train_like_uncached(tiny_backbone, monkeypatch):
    from anomed.methods.madclip import MadCLIP

    two_views = staticmethod(lambda image, mask: [(image, mask), (image[:, ::-1], mask[:, ::-1])])
    monkeypatch.setattr(MadCLIP, "views", two_views)
    plain, _ = _train("madclip", tiny_backbone, cache=False, epochs=2)
    cached, _ = _train("madclip", tiny_backbone, cache=True, epochs=2)
    assert cached == pytest.approx(plain, rel=1e-3)


def test_variants_cycle_and_shrink_to_the_budget(tiny_backbone):
    method = create_method("mediclip", tiny_backbone)
    train_set = method.train_dataset([_support(labelled=False)], seed=0)
    logs: list[str] = []
    cfg = TrainConfig(cache_variants=3)
    cache = build_feature_cache(method, train_set, 10, CPU, cfg, logs.append)
    assert len(cache.variants) == 3 and len(cache) == 4
    assert "cycled over 10 epochs" in logs[-1]
    first = torch.cat([b["index"] for b in cache.batches(1, 4, torch.Generator())])
    assert sorted(first.tolist()) == [0, 1, 2, 3]
    one_variant = cache.nbytes / 3 / 2**30
    small = TrainConfig(cache_variants=3, cache_budget_gib=1.5 * one_variant)
    assert len(build_feature_cache(method, train_set, 10, CPU, small, logs.append).variants) == 1
    tiny = TrainConfig(cache_budget_gib=0.5 * one_variant)
    assert build_feature_cache(method, train_set, 10, CPU, tiny, logs.append) is None
    assert "training without the cache" in logs[-1]
    with pytest.raises(AnomedError, match="cache_variants: 0 is out of range"):
        from_dict(TrainConfig, {"cache_variants": 0})  # checked with the config, not here


def test_no_cache_for_methods_that_backpropagate_through_the_backbone(tiny_backbone):
    method = create_method("mvfa", tiny_backbone)
    train_set = method.train_dataset([_support(labelled=True)], seed=0)
    assert build_feature_cache(method, train_set, 5, CPU, TrainConfig(), print) is None


def test_cached_validation_gives_the_same_metrics(tiny_backbone):
    from anomed.engine.cache import cached_validation

    _, method = _train("mediclip", tiny_backbone, cache=True, epochs=1)
    items = method.validation_items(_support(labelled=False), seed=0)
    direct = evaluate_items(method, items, 4, CPU).metrics
    batches = cached_validation(method, items, 4, CPU, True)
    assert all("image" not in b and "patches" in b for b in batches)  # no backbone pass left
    cached = run_batches(method, batches, CPU).metrics
    assert cached == pytest.approx(direct, abs=1e-6)


def test_bf16_numerics_can_be_checked_on_cpu(tiny_backbone, monkeypatch):
    from anomed.engine.device import CPU_BF16_ENV, autocast, uses_bf16

    assert not uses_bf16(CPU, True)
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert uses_bf16(CPU, True) and not uses_bf16(CPU, False)
    method = create_method("mediclip", tiny_backbone)
    with torch.no_grad(), autocast(CPU, True):
        out = method(torch.rand(1, 3, SIZE, SIZE))
    assert out.anomaly_map.shape == (1, SIZE, SIZE) and torch.isfinite(out.image_score).all()
