"""Scoring archives larger than one machine on Ray: `anomed predict ... --engine ray`.

Ray Data lists and decodes the inputs in CPU tasks, model actors (one per GPU, or N on CPUs,
the checkpoint loaded once per actor) score batches, and CPU tasks write Parquet shards under
OUT/predictions/ (each shard written atomically). A rerun into the same OUT skips every input
already written; a killed actor's batch is retried by Ray; rows are deduplicated by input key.

Only `--engine ray` imports this package, and only it imports `ray`: the rest of anomed never
needs Ray installed (`pip install anomed[ray]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anomed.ray.pipeline import RayPredictConfig, RayPredictReport, predict_ray

__all__ = ["RayPredictConfig", "RayPredictReport", "predict_ray"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from anomed.ray import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
