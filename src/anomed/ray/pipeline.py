"""`anomed predict ... --engine ray`: the Ray Data pipeline and the run around it.

    given paths / manifests -> list (CPU tasks; resume filter) -> decode (CPU tasks)
        -> score (model actors: one per GPU, or N on CPUs) -> write shards (CPU tasks)

Before Ray starts, the checkpoint is loaded once on the driver (a bad checkpoint fails at once
with its message), OUT is checked, and the keys already written are read. After the pipeline,
duplicate rows are compacted away and OUT/summary.json describes the whole folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from anomed.config import Bounds, Pattern
from anomed.errors import AnomedError
from anomed.outputs import write_json
from anomed.ray import shards
from anomed.ray.inputs import Manifest, expand_batch, split_inputs
from anomed.ray.stages import Scorer, ScorerSpec, decode_batch

DECODE_WORKER_BYTES = 768 * 1024**2
ADDRESS = Pattern(r"auto|ray://[^\s]+|[^\s:/]+:\d+", "auto, ray://host:10001 or host:6379")


@dataclass
class RayPredictConfig:
    """How the Ray engine runs; the CLI's flags, checked by `anomed.config.from_dict`."""

    address: Annotated[str | None, ADDRESS] = None  # None: a Ray on this machine only
    workers: Annotated[int | None, Bounds(1)] = None  # model actors; None: see plan_resources
    gpus_per_worker: Annotated[float | None, Bounds(0)] = None  # None: 1 if the cluster has GPUs
    batch_size: Annotated[int, Bounds(1)] = 16  # images per forward pass
    block_rows: Annotated[int, Bounds(1)] = 64  # inputs per decode task
    shard_rows: Annotated[int, Bounds(1)] = 1024  # rows per Parquet shard (at most)
    maps: bool = False  # write overlay PNGs (images) and anomaly NIfTI maps (volumes)
    path_column: str = "path"  # the path column of CSV / Parquet manifests
    retry_errors: bool = False  # on resume, score error rows again
    overwrite: bool = False  # empty OUT first instead of resuming
    progress: bool = True
    domain_check: Literal["warn", "refuse", "off"] = "warn"  # see anomed.engine.domain


@dataclass
class Plan:
    """Resources per stage, fixed from the cluster before the pipeline starts."""

    workers: int
    gpus_per_worker: float
    actor_cpus: float
    task_cpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_worker > 0 else "cpu"


@dataclass
class RayPredictReport:
    """This run's counts, the whole OUT folder's totals, and where everything is."""

    output_dir: Path
    run_id: str
    plan: Plan
    this_run: dict[str, int]  # written, ok, error, abnormal, skipped, excluded
    totals: dict[str, int]  # rows, ok, error, abnormal over every shard in OUT
    duplicates_removed: int = 0
    seconds: float = 0.0
    manifests: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return self.this_run["error"]

    def summary_lines(self) -> list[str]:
        run, tot = self.this_run, self.totals
        rate = run["written"] / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"ray: {self.plan.workers} model worker(s) on {self.plan.device}, "
            f"{run['written']} inputs written in {self.seconds:.1f} s ({rate:.1f}/s)",
            f"this run: {run['ok']} scored ({run['abnormal']} abnormal), {run['error']} failed, "
            f"{run['skipped']} already written (skipped), {run['excluded']} mask/hidden left out",
            f"{self.output_dir}: {tot['rows']} rows ({tot['ok']} ok, {tot['error']} error, "
            f"{tot['abnormal']} abnormal) in {shards.SHARDS}/part-*.parquet; summary.json",
        ]
        if tot.get("out_of_domain"):
            lines.append(
                f"domain guard: {tot['out_of_domain']} rows are outside this detector's training "
                "domain (column in_domain)"
            )
        if self.duplicates_removed:
            lines.append(f"removed {self.duplicates_removed} duplicate/superseded rows")
        return lines


def plan_resources(cfg: RayPredictConfig, resources: dict[str, float]) -> Plan:
    """Workers and CPUs per stage: model actors leave at least min(1, CPUs / 2) CPUs to the
    list/decode/write tasks, so the pipeline cannot wait forever for a CPU. A request for
    more GPUs than the cluster has is refused instead of waiting forever."""
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    g = cfg.gpus_per_worker if cfg.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    if g > 0:
        workers = cfg.workers or max(1, int(gpus // g))
        if workers * g > gpus + 1e-9:
            raise AnomedError(
                f"--workers {workers} x --gpus-per-worker {g:g} needs {workers * g:g} GPUs; the "
                f"Ray cluster has {gpus:g}. Fix: lower --workers, or add GPU nodes "
                "(`ray start --address=HEAD:6379` on each)."
            )
    else:
        workers = cfg.workers or max(1, int(cpus // 2))
    reserve = min(1.0, cpus / 2)
    actor_cpus = min(1.0, (cpus - reserve) / workers)
    if actor_cpus < 0.05:
        raise AnomedError(
            f"--workers {workers}: the Ray cluster has {cpus:g} CPUs, too few for that many "
            "model workers and the decode tasks. Fix: lower --workers."
        )
    return Plan(workers, g, round(actor_cpus, 3), round(reserve, 3))


@contextlib.contextmanager
def ray_session(address: str | None, progress: bool) -> Iterator[object]:
    """Connect to `address` (or start a Ray on this machine); shut down only what we started.

    A Ray already initialised in this process (tests, notebooks) is used as it is."""
    import ray

    started = False
    if not ray.is_initialized():
        local = {} if address else {"_node_ip_address": "127.0.0.1"}
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=progress,
                **local,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AnomedError(
                f"--address {address}: cannot connect to Ray ({exc}). Fix: start the head with "
                "`ray start --head` and pass --address auto on that machine, or "
                "ray://HEAD:10001 from elsewhere."
            ) from exc
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _listing(ray, plain: list[str], manifests: list[Manifest], done: np.ndarray, plan: Plan):
    """One dataset of input rows from the given paths and every manifest (read in parallel)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    remote = {"num_cpus": plan.task_cpus, "batch_format": "numpy"}
    parts = []
    if plain:
        items = [{"input": os.path.abspath(p)} for p in plain]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 64))
        parts.append(ds.map_batches(expand_batch, batch_size=1, fn_kwargs={"done": done}, **remote))
    for m in manifests:
        if m.path.suffix.lower() == ".parquet":
            ds = ray.data.read_parquet(str(m.path.absolute()), columns=[m.column])
        else:
            options = pacsv.ConvertOptions(
                include_columns=[m.column], column_types={m.column: pa.string()}
            )
            ds = ray.data.read_csv(str(m.path.absolute()), convert_options=options)
        ds = ds.rename_columns({m.column: "input"}) if m.column != "input" else ds
        kwargs = {"done": done, "base": m.base}
        parts.append(ds.map_batches(expand_batch, batch_size=256, fn_kwargs=kwargs, **remote))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _pipeline(ray, listed, cfg: RayPredictConfig, plan: Plan, spec: ScorerSpec, size: int, writer):
    numpy = {"batch_format": "numpy"}
    ds = listed.repartition(target_num_rows_per_block=cfg.block_rows)
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"image_size": size},
        num_cpus=plan.task_cpus,
        # a worker with anomed imported (~0.6 GiB RSS, torch included) plus the decoded block:
        # a real request, and a remote argument the model actors lack, so Ray Data never fuses
        # decoding into them (fusion needs equal remote arguments)
        memory=DECODE_WORKER_BYTES + cfg.block_rows * size * size * 3 * 4 * 4,
        **numpy,
    )
    ds = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"spec": spec},
        # Ray Data restarts a killed actor and retries its batch; Scorer turns a batch that
        # killed its actor MAX_ATTEMPTS times into error rows, so one poison input cannot
        # stall the job
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        batch_size=cfg.batch_size,
        num_cpus=plan.actor_cpus,
        num_gpus=plan.gpus_per_worker or None,
        **numpy,
    )
    return ds.map_batches(
        shards.write_shard,
        fn_kwargs=writer,
        batch_size=cfg.shard_rows,
        num_cpus=plan.task_cpus,
        **numpy,
    )


def predict_ray(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    cfg: RayPredictConfig | None = None,
) -> RayPredictReport:
    """Score files, folders and manifests on a Ray cluster into Parquet shards under OUT.

    Resumes into an OUT written by the same checkpoint; raises AnomedError before any work for
    a bad checkpoint, OUT, manifest or resource request."""
    from anomed.engine.detector import load_detector

    cfg = cfg or RayPredictConfig()
    if not inputs:
        raise AnomedError("no inputs given. Fix: pass image files, folders or a manifest.")
    detector = load_detector(checkpoint, "cpu", cfg.batch_size)  # fails fast, before Ray
    rid = shards.run_id(checkpoint)
    plain, manifests = split_inputs(inputs, cfg.path_column)
    keep = [checkpoint, *(m.path for m in manifests)]
    out = shards.check_output(output_dir, rid, cfg.overwrite, plain, keep, maps=cfg.maps)
    run_info = {"run_id": rid, "checkpoint": os.path.abspath(checkpoint), "maps": cfg.maps}
    method = detector.info.run.method
    writer = {
        "output_dir": str(out),
        "run": rid,
        "threshold": detector.threshold,
        "limits": detector.map_range,
    }
    size = detector.image_size
    del detector
    start = time.perf_counter()
    with ray_session(cfg.address, cfg.progress) as ray:
        plan = plan_resources(cfg, ray.cluster_resources())
        shards.open_output(out, cfg.overwrite, {**run_info, "method": method})
        done = shards.done_keys(out, cfg.retry_errors)
        spec = ScorerSpec(
            str(Path(checkpoint).absolute()),
            plan.device,
            cfg.batch_size,
            str(out),
            cfg.maps,
            cfg.domain_check,
        )
        pipeline = _pipeline(
            ray, _listing(ray, plain, manifests, done, plan), cfg, plan, spec, size, writer
        )
        counts = _drain(pipeline)
    shards.clear_attempts(out)
    removed = shards.compact(out)
    report = RayPredictReport(
        out, rid, plan, counts, _totals(out), removed, time.perf_counter() - start
    )
    report.manifests = [str(m.path) for m in manifests]
    _write_summary(report, cfg, run_info, writer["threshold"])
    return report


def _drain(pipeline) -> dict[str, int]:
    """Run the pipeline to the end; sum the writers' counts."""
    counts = dict.fromkeys(shards.COUNTS, 0)
    with warnings.catch_warnings():  # Ray Data guesses the actors' input count too early
        warnings.filterwarnings("ignore", "The minimum number of concurrent actors")
        for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
            for name in shards.COUNTS:
                counts[name] += int(batch[name].sum())
    return counts


def _totals(out: Path) -> dict[str, int]:
    table = shards.read_column_table(out, ["status", "decision", "in_domain"])
    status, decision = table.column("status").to_pylist(), table.column("decision").to_pylist()
    ok = status.count("ok")
    return {
        "rows": len(status),
        "ok": ok,
        "error": len(status) - ok,
        "abnormal": decision.count("abnormal"),
        "out_of_domain": table.column("in_domain").to_pylist().count(False),
    }


def _write_summary(report: RayPredictReport, cfg, run_info: dict, threshold) -> None:
    plan = report.plan
    write_json(
        report.output_dir / "summary.json",
        {
            **run_info,
            "engine": "ray",
            "threshold": threshold,
            "totals": report.totals,
            "this_run": report.this_run,
            "duplicates_removed": report.duplicates_removed,
            "seconds": round(report.seconds, 3),
            "workers": plan.workers,
            "device": plan.device,
            "gpus_per_worker": plan.gpus_per_worker,
            "address": cfg.address,
            "batch_size": cfg.batch_size,
            "maps": cfg.maps,
            "manifests": report.manifests,
            "shards": f"{shards.SHARDS}/part-*.parquet",
        },
    )
