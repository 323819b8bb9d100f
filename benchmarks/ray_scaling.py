"""Images per second of `anomed predict --engine ray` with 1 and 2 CPU model workers against the
local engine, on the same phantom images and checkpoint.

    python benchmarks/ray_scaling.py                      # 400 phantoms at 224 px, workers 1 2
    python benchmarks/ray_scaling.py --n 2000 --workers 1 2 4 --cpus 8 --maps
    python benchmarks/ray_scaling.py --checkpoint runs/demo/checkpoint --images DIR

Rows: decoding alone in one process (images/s per CPU core, for the README's sizing note); the
local engine as `anomed predict` runs it (scores + an overlay PNG per image); the local scoring
alone (`Detector.predict`, no overlays); the Ray engine per worker count (a fresh OUT each;
Parquet rows, overlays only with --maps). "overhead" is an all-skipped rerun
into the same OUT (actor start-up, listing, resume filter); "img/s" counts the whole wall time,
"img/s after start" subtracts that overhead. A random-init `anomed-tiny` checkpoint is trained
unless --checkpoint is given: the figures measure the machinery, not a real model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from anomed.cli import main as cli
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.engine.detector import load_detector
from anomed.engine.predict import collect_inputs, predict_run


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(checkpoint, image folder): given, or phantoms and a 1-epoch tiny checkpoint."""
    images = Path(args.images) if args.images else None
    if images is None or args.checkpoint is None:
        root = work / "phantoms"
        half = args.n // 2
        cfg = PhantomConfig(12, args.n - half, half, image_size=args.size)
        write_phantom_dataset(root, cfg)
        images = images or root / "test"
    checkpoint = Path(args.checkpoint) if args.checkpoint else work / "ckpt"
    if args.checkpoint is None:
        argv = ["-q", "train", "--data", str(work / "phantoms"), "--k", "2", "--epochs", "1"]
        argv += ["--image-size", str(args.size), "-o", str(checkpoint), "--set", "data.n_val=2"]
        assert cli(argv) == 0
    return checkpoint, images


def time_local(checkpoint: Path, images: Path, work: Path, batch: int) -> list[dict]:
    files, _, _, _ = collect_inputs([images])
    t0 = time.perf_counter()
    predict_run(checkpoint, [images], work / "local", batch_size=batch, progress=False)
    with_overlays = time.perf_counter() - t0
    detector = load_detector(checkpoint, "cpu", batch)
    t0 = time.perf_counter()
    detector.predict(files, keep_maps=False)
    scoring = time.perf_counter() - t0
    n = len(files)
    return [
        {"engine": "local (predict: scores + overlays)", "n": n, "seconds": with_overlays},
        {"engine": "local (Detector.predict, no overlays)", "n": n, "seconds": scoring},
    ]


def time_decode(images: Path, size: int) -> dict:
    """One CPU's decode rate (read + check + resize, as the Ray decode tasks do): the figure
    that says how many CPU cores keep one GPU fed."""
    import numpy as np

    from anomed.ray.inputs import expand_batch
    from anomed.ray.stages import decode_batch

    batch = expand_batch({"input": np.array([str(images)], dtype=object)})
    n = int(np.sum(batch["kind"] == "image"))
    t0 = time.perf_counter()
    decode_batch(batch, size)
    return {
        "engine": "decode only (1 process: read + resize)",
        "n": n,
        "seconds": time.perf_counter() - t0,
    }


def time_ray(checkpoint: Path, images: Path, work: Path, args: argparse.Namespace) -> list[dict]:
    from anomed.ray import RayPredictConfig, predict_ray

    rows = []
    for workers in args.workers:
        out = work / f"ray-{workers}"
        cfg = RayPredictConfig(
            workers=workers, batch_size=args.batch_size, maps=args.maps, progress=False
        )
        first = predict_ray(checkpoint, [str(images)], out, cfg)
        rerun = predict_ray(checkpoint, [str(images)], out, cfg)
        assert first.this_run["error"] == 0 and rerun.this_run["written"] == 0
        rows.append(
            {
                "engine": f"ray, {workers} CPU worker(s)" + (" + maps" if args.maps else ""),
                "n": first.this_run["written"],
                "seconds": first.seconds,
                "overhead": rerun.seconds,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| engine | images | seconds | img/s | overhead s | img/s after start |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        over = r.get("overhead")
        steady = r["n"] / (r["seconds"] - over) if over and r["seconds"] > over else None
        lines.append(
            f"| {r['engine']} | {r['n']} | {r['seconds']:.1f} | {r['n'] / r['seconds']:.1f} | "
            f"{'-' if over is None else f'{over:.1f}'} | "
            f"{'-' if steady is None else f'{steady:.1f}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=400, help="phantom images to score")
    p.add_argument("--size", type=int, default=224, help="phantom and model input size")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--maps", action="store_true", help="Ray writes overlays too")
    p.add_argument("--checkpoint", help="use this checkpoint (default: train a tiny one)")
    p.add_argument("--images", help="score this folder (default: phantoms)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="anomed-ray-scaling-"))
    try:
        checkpoint, images = prepare(args, work)
        rows = [time_decode(images, load_detector(checkpoint, "cpu").image_size)]
        rows += time_local(checkpoint, images, work, args.batch_size)
        ray.init(num_cpus=args.cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
        try:
            rows += time_ray(checkpoint, images, work, args)
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.n} images at {args.size} px, batch {args.batch_size}, Ray with {args.cpus} CPUs")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
