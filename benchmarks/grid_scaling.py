"""Cells per hour of `anomed bench run` with the local engine and the Ray engine with 1 and 2
workers (a local Ray with that many CPUs, one CPU per cell), on the same phantom grid.

    python benchmarks/grid_scaling.py                         # 2 methods x 2 datasets x 2 seeds
    python benchmarks/grid_scaling.py --methods memorybank --seeds 0 --n 4 --workers 1   # smoke

Rows: each engine on a fresh bench folder. "cell s" is the mean train + eval time inside a
cell (results.csv); "overhead/cell" is the wall time per cell beyond that: for W workers
W x wall / cells - cell s (process and model start-up, scheduling, results and the report).
"resume s" is a rerun into the same folder with every cell done (the grid check, reading the
records, results.csv). Cells run with one torch thread each (OMP_NUM_THREADS=1), so workers
do not fight over cores. A random-init `anomed-tiny` backbone: the figures measure the
machinery, not a model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms
from anomed.engine.bench import BenchConfig, run_bench


def grid(args: argparse.Namespace, data: Path, out: Path) -> BenchConfig:
    return BenchConfig(
        methods=args.methods,
        datasets={"brain": str(data / "Brain_AD"), "liver": str(data / "Liver_AD")},
        ks=[args.k],
        seeds=args.seeds,
        epochs=args.epochs,
        image_size=args.size,
        abnormal_from_test=False,
        overrides={"data.n_val": 2},
        output=str(out),
    )


def timed(cfg: BenchConfig, engine=None) -> dict:  # noqa: ANN001
    quiet = lambda _: None  # noqa: E731
    start = time.perf_counter()
    run_bench(cfg, progress=False, log=quiet, engine=engine)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    run_bench(cfg, progress=False, log=quiet, engine=engine)  # every cell done: resume only
    resume = time.perf_counter() - start
    with open(Path(cfg.output) / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    cell = sum(float(r["train_seconds"]) + float(r["eval_seconds"]) for r in rows) / len(rows)
    return {"cells": len(rows), "seconds": wall, "cell": cell, "resume": resume}


def table(rows: list[dict]) -> str:
    lines = ["| engine | cells | wall s | cells/hour | cell s | overhead/cell s | resume s |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per_cell = r["workers"] * r["seconds"] / r["cells"]
        lines.append(
            f"| {r['engine']} | {r['cells']} | {r['seconds']:.1f} | "
            f"{3600 * r['cells'] / r['seconds']:.0f} | {r['cell']:.1f} | "
            f"{per_cell - r['cell']:.1f} | {r['resume']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["memorybank", "mvfa"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--size", type=int, default=64, help="phantom and model input size")
    p.add_argument("--n", type=int, default=6, help="phantoms per class in valid/ and test/")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import ray

    from anomed.ray.bench import RayBenchConfig, ray_engine

    work = Path(tempfile.mkdtemp(prefix="anomed-grid-scaling-"))
    try:
        data = work / "data"
        n = (args.n, args.n)
        organs = BmadPhantomConfig(("brain", "liver"), n_valid=n, n_test=n, size=args.size)
        write_bmad_phantoms(data, organs)
        rows = [{"engine": "local", "workers": 1, **timed(grid(args, data, work / "local"))}]
        for workers in args.workers:
            ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1")
            try:
                engine = ray_engine(RayBenchConfig(cpus_per_cell=1), progress=False)
                result = timed(grid(args, data, work / f"ray-{workers}"), engine)
            finally:
                ray.shutdown()
            rows.append({"engine": f"ray, {workers} worker(s)", "workers": workers, **result})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{len(args.methods)} methods x 2 datasets x {len(args.seeds)} seeds at k={args.k}, "
        f"{args.epochs} epoch(s), {args.size} px, anomed-tiny (random-init)"
    )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
