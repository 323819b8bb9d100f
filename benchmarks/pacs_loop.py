"""N series through a real Orthanc on loopback and `anomed pacs watch`: series/min, the time
from a series' arrival to its results being stored, and the split retrieve / score / store.

    python benchmarks/pacs_loop.py                       # 100 series (half MR volumes, half CR)
    python benchmarks/pacs_loop.py --n 3 --json runs/pacs_loop.json   # a smoke test

The script starts Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) on a free 127.0.0.1 port
with a temporary storage folder, uploads N phantom series (MR: a `--shape` head volume as a
single-frame DICOM series; CR: a chest film of `--film` px) through Orthanc's REST API, then runs
the worker loop (SEG + PM + SR sent back) until every series is sent, and stops Orthanc by its
PID. The series arrive together (a burst), so "arrival to stored" includes the queue; "worker
s per series" is retrieve + score + store of one series. Without `--checkpoint` the model is the
untrained tiny random-init MediCLIP: the figures measure the loop, not a detector.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "pacs"), str(ROOT / "benchmarks")]


def make_series(folder: Path, n: int, shape: tuple[int, int, int], film: int) -> list[list[Path]]:
    """n phantom series, MR volumes and CR films alternating, each with its own UIDs."""
    from anomed.data.phantoms.chest import make_chest_film, write_dicom_radiograph
    from anomed.data.phantoms.heads import (
        VolumePhantomConfig,
        phantom_affine,
        write_dicom_series,
        write_phantom_volumes,
    )
    from anomed.data.volumes import read_nifti

    cases = write_phantom_volumes(folder / "heads", VolumePhantomConfig(n_cases=1, shape=shape))
    head = read_nifti(cases[0].sequences["t1"]).data
    rng = np.random.default_rng(0)
    series = []
    for i in range(n):
        if i % 2 == 0:
            out = folder / f"mr{i:04d}"
            series.append(write_dicom_series(out, head, phantom_affine(shape), f"bench-mr-{i}"))
        else:
            film_img = make_chest_film(rng, film)[0]
            path = folder / f"cr{i:04d}" / "0.dcm"
            series.append([write_dicom_radiograph(path, film_img, f"bench-cr-{i}/0")])
    return series


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    import pydicom
    from orthanckit import Orthanc
    from serve_load import tiny_checkpoint

    from anomed.engine.detector import load_detector
    from anomed.pacs import PacsClient, WatchConfig, Watcher

    with tempfile.TemporaryDirectory(prefix="anomed-pacs-bench-") as tmp:
        tmp = Path(tmp)
        run_dir = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(tmp)
        series = make_series(tmp / "series", args.n, tuple(args.shape), args.film)
        server = Orthanc(tmp / "orthanc").start()
        try:
            arrived = {}
            for files in series:
                server.upload(files)
                uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
                arrived[uid] = time.time()
            stored: dict[str, float] = {}

            def on_event(name: str, **kw) -> None:
                if name in ("sent", "failed"):
                    stored[kw["series"]] = time.time()
                    if len(stored) == len(series):
                        watcher.stop.set()

            cfg = WatchConfig(data_dir=tmp / "data", poll_s=0.5, stable_s=0.0)
            client = PacsClient(server.dicomweb)
            detector = load_detector(run_dir, args.device)
            watcher = Watcher(detector, client, cfg, log=lambda line: None, on_event=on_event)
            guard = threading.Timer(args.timeout_s, watcher.stop.set)  # never runs on forever
            guard.start()
            t0 = time.time()
            watcher.run()
            wall = time.time() - t0
            guard.cancel()
            rows = watcher.ledger.all()
            watcher.close()
        finally:
            server.stop()
    sent = [r for r in rows if r["state"] == "sent"]
    timing = {k: [r["timings"][k] for r in sent] for k in ("retrieve_s", "score_s", "store_s")}
    latency = [stored[r["series_uid"]] - arrived[r["series_uid"]] for r in sent]
    work = [sum(r["timings"][k] for k in ("retrieve_s", "score_s", "store_s")) for r in sent]
    return {
        "n_series": args.n,
        "n_sent": len(sent),
        "n_failed": len(rows) - len(sent),
        "complete": len(sent) == args.n,
        "wall_s": wall,
        "series_per_min": 60 * len(sent) / wall,
        "arrival_to_stored_s": {"p50": _percentile(latency, 50), "p95": _percentile(latency, 95)},
        "worker_s_per_series": {"p50": _percentile(work, 50), "p95": _percentile(work, 95)},
        "mean_s": {k: float(np.mean(v)) if v else None for k, v in timing.items()},
        "setup": {
            "checkpoint": args.checkpoint or "untrained tiny MediCLIP (random-init backbone)",
            "mr_shape": list(args.shape),
            "cr_film_px": args.film,
            "device": args.device,
            "send": ["seg", "pmap", "sr"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="series to send through (default 100)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 24], help="MR voxels")
    parser.add_argument("--film", type=int, default=256, help="CR film side in px")
    parser.add_argument("--checkpoint", help="a run folder (default: the untrained tiny model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout-s", type=float, default=900, help="give up after this long")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
