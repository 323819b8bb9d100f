"""Micro-batching: concurrent requests share one forward pass instead of queueing for many.

Each loaded model has one `MicroBatcher` and one worker thread that owns the model. A request
hands over its prepared images and waits on futures; the worker takes the first waiting image,
collects more for at most `max_wait_s` (or until `max_batch`), runs `Detector.score_batch` once
and hands every caller its own score and map. With `max_batch=1` every image runs alone (the
benchmark's "without micro-batching"). The model is never loaded per request, and no two forward
passes on one model overlap.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from anomed.engine.detector import Detector, Scored

# images (B, S, S, 3) -> (scores (B,), maps (B, S, S)[, domain distances (B,) or None])
ScoreFn = Callable[[np.ndarray], tuple]


class BatcherClosed(RuntimeError):
    """The server is shutting down; the image was not scored."""


@dataclass
class _Item:
    image: np.ndarray  # (S, S, 3) float32
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread running `score_fn` on batches gathered from concurrent callers."""

    def __init__(
        self, score_fn: ScoreFn, max_batch: int = 16, max_wait_s: float = 0.005, name: str = ""
    ) -> None:
        self.score_fn = score_fn
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self.batches = 0  # forward passes run
        self.items = 0  # images scored
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()  # no image is queued after the stop sentinel
        self._thread = threading.Thread(target=self._run, name=f"anomed-batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one (S, S, 3) image; the future gives (score, map (S, S))."""
        item = _Item(image)
        with self._lock:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            self._queue.put(item)
        return item.future

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, S, S, 3) -> scores (B,), maps (B, S, S), like `Detector.score_batch`,
        but sharing forward passes with every other caller."""
        return self.run(images)[:2]

    def run(self, images: np.ndarray) -> Scored:
        """`score` plus the domain distances (None when `score_fn` gives none)."""
        futures = [self.submit(image) for image in images]
        results = [f.result() for f in futures]
        scores = np.array([r[0] for r in results], np.float32)
        domain = [r[2] for r in results]
        distances = None if None in domain else np.array(domain, np.float32)
        return Scored(scores, np.stack([r[1] for r in results]), distances)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the images already queued, then stop the worker."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._process(batch)
            if stop:
                return

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """The first item plus whatever arrives within max_wait_s, up to max_batch."""
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _process(self, batch: list[_Item]) -> None:
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            out = self.score_fn(np.stack([item.image for item in live]))
            scores, maps = out[0], out[1]
            domain = out[2] if len(out) > 2 and out[2] is not None else [None] * len(scores)
            results = [
                (float(s), m, None if d is None else float(d))
                for s, m, d in zip(scores, maps, domain, strict=True)
            ]
            if len(results) != len(live):
                raise ValueError(f"{len(results)} results for a batch of {len(live)} images")
        except BaseException as exc:  # handed to every caller of this batch; the worker lives
            for item in live:
                item.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(live)
        for item, result in zip(live, results, strict=True):
            item.future.set_result(result)


class BatchedDetector:
    """The part of `Detector` that `predict_volume` and the image path use, with every forward
    pass going through the model's batcher."""

    def __init__(self, detector: Detector, batcher: MicroBatcher) -> None:
        self.detector = detector
        self.batcher = batcher

    @property
    def image_size(self) -> int:
        return self.detector.image_size

    @property
    def batch_size(self) -> int:
        return self.batcher.max_batch

    @property
    def threshold(self) -> float | None:
        return self.detector.threshold

    def decide(self, score: float | None) -> str | None:
        return self.detector.decide(score)

    def score_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.batcher.score(images)

    def run_batch(self, images: np.ndarray) -> Scored:
        return self.batcher.run(images)
