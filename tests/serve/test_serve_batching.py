"""The micro-batcher: concurrent callers share forward passes and each gets its own result."""

import threading
import time

import numpy as np
import pytest

from anomed.serve.batching import BatcherClosed, MicroBatcher


def fake_model(calls: list[int], delay: float = 0.0):
    """score = mean pixel, map = the first channel; records each batch size."""

    def score(images):
        calls.append(len(images))
        time.sleep(delay)
        return images.mean(axis=(1, 2, 3)), images[..., 0]

    return score


def test_concurrent_requests_share_forward_passes():
    calls: list[int] = []
    batcher = MicroBatcher(fake_model(calls, delay=0.05), max_batch=8, max_wait_s=0.05)
    results = {}

    def one(i):
        image = np.full((4, 4, 3), i / 20, np.float32)
        results[i] = batcher.submit(image).result(timeout=10)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert sum(calls) == 16 and len(calls) < 16 and max(calls) <= 8
    for i, (score, amap, distance) in results.items():  # every caller: its own image's result
        assert distance is None  # this model computes no domain distance
        assert score == pytest.approx(i / 20) and amap.shape == (4, 4)
        assert amap[0, 0] == pytest.approx(i / 20)
    assert batcher.items == 16 and batcher.batches == len(calls)


def test_max_batch_one_runs_every_image_alone():
    calls: list[int] = []
    batcher = MicroBatcher(fake_model(calls), max_batch=1, max_wait_s=0.05)
    scores, maps = batcher.score(np.zeros((5, 4, 4, 3), np.float32))
    batcher.close()
    assert calls == [1] * 5 and scores.shape == (5,) and maps.shape == (5, 4, 4)


def test_a_failing_pass_fails_its_callers_and_the_next_pass_runs():
    state = {"fail": True}

    def flaky(images):
        if state.pop("fail", False):
            raise RuntimeError("boom")
        return images.mean(axis=(1, 2, 3)), images[..., 0]

    batcher = MicroBatcher(flaky, max_batch=4, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(np.zeros((2, 2, 3), np.float32)).result(timeout=10)
    score, _, _ = batcher.submit(np.ones((2, 2, 3), np.float32)).result(timeout=10)
    assert score == 1.0
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit(np.ones((2, 2, 3), np.float32))


def test_a_pass_with_the_wrong_number_of_results_fails_its_callers_not_the_worker():
    """Results not matching the batch (a method's shape bug) used to raise in the worker
    thread after the forward pass: it died, and its callers and every later caller waited
    forever."""
    state = {"short": True}

    def model(images):
        n = len(images) - 1 if state.pop("short", False) else len(images)
        return images.mean(axis=(1, 2, 3))[:n], images[:n, ..., 0]

    batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.0)
    with pytest.raises(ValueError):
        batcher.submit(np.zeros((2, 2, 3), np.float32)).result(timeout=10)
    score, _, _ = batcher.submit(np.ones((2, 2, 3), np.float32)).result(timeout=10)
    assert score == 1.0
    batcher.close()
