"""A local Ray for one test module: 2 CPUs on loopback, no dashboard, a small object store, and
the environment variables its workers need (fault injection)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_ray(env_vars: dict[str, str]) -> Iterator[None]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"env_vars": env_vars},
    )
    try:
        yield
    finally:
        ray.shutdown()
