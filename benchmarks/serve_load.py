"""Bounded load on `anomed serve` over loopback: requests/s, p50/p95 latency and errors, with and
without micro-batching.

    python benchmarks/serve_load.py                       # 16 clients x 60 s per mode, tiny model
    python benchmarks/serve_load.py --clients 8 --seconds 10 --json runs/serve_load.json

For each mode the script starts `anomed serve` as its own process on 127.0.0.1 (a free port, a
temporary data folder, CPU), lets `--clients` threads POST one PNG to /api/predict in a loop for
`--seconds` (and never more than `--max-requests` in all), then stops the server. Traffic goes
to 127.0.0.1 only, and every loop ends by itself. Without `--checkpoint` the model is the tiny
random-init MediCLIP saved untrained: the figures measure the service, not a detector.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HOST = "127.0.0.1"  # loopback only, by design: there is no option to aim this elsewhere
MODES = {"batched": (16, 5.0), "unbatched": (1, 0.0)}  # name: (--max-batch, --batch-wait-ms)


def tiny_checkpoint(folder: Path, model: str = "anomed-tiny", image_size: int = 112) -> Path:
    """An untrained MediCLIP (default: the tiny one at 112 px, what the tests serve) with a fixed
    threshold."""
    from anomed.backbone import BackboneConfig, load_backbone
    from anomed.config import RunConfig
    from anomed.engine.checkpoint import Calibration, CheckpointInfo, save_checkpoint
    from anomed.methods import create_method

    cfg = BackboneConfig(model=model, image_size=image_size)
    method = create_method("mediclip", load_backbone(cfg))
    info = CheckpointInfo(
        run=RunConfig(backbone=cfg),
        calibration=Calibration(threshold=0.8, map_min=0.0, map_max=1.0),
        fit={"epochs": 0, "note": "untrained benchmark checkpoint"},
    )
    return save_checkpoint(folder / "checkpoint", method, info)


def test_png(size: int = 224) -> bytes:
    y, x = np.mgrid[:size, :size]
    image = 90 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)
    image[(x - size * 0.6) ** 2 + (y - size * 0.4) ** 2 < (size / 10) ** 2] = 230
    buf = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(
    checkpoint: Path, data: Path, max_batch: int, wait_ms: float, device: str = "cpu"
) -> tuple:
    port = free_port()
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "anomed.cli", "serve", str(checkpoint), "--host", HOST]
    cmd += ["--port", str(port), "--data-dir", str(data), "--device", device]
    cmd += ["--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"anomed serve did not start (exit code {proc.poll()})")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(url: str, body: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` threads POST `body` until the time or the request budget runs out."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    budget = [max_requests]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < stop_at:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                start = time.perf_counter()
                try:
                    r = http.post("/api/predict", files={"file": ("load.png", body)})
                    ok = r.status_code == 200 and r.json().get("status") == "ok"
                    problem = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed) if problem is None else errors.append(problem)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the tiny untrained MediCLIP")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap over all clients")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--device", default="cpu", help="the server's device (cpu, cuda)")
    parser.add_argument("--model", default="anomed-tiny", help="backbone of the untrained model")
    parser.add_argument("--image-size", type=int, default=112)
    args = parser.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 600):
        raise SystemExit("--clients must be 1-256 and --seconds 0-600 (the load stays bounded)")
    body, results = test_png(), {}
    with tempfile.TemporaryDirectory(prefix="anomed-serve-load-") as tmp:
        checkpoint = args.checkpoint or tiny_checkpoint(Path(tmp), args.model, args.image_size)
        for mode in args.modes:
            max_batch, wait_ms = MODES[mode]
            proc, url = start_server(
                checkpoint, Path(tmp) / f"data-{mode}", max_batch, wait_ms, args.device
            )
            try:
                httpx.post(f"{url}/api/predict", files={"file": ("warm.png", body)}, timeout=60)
                results[mode] = load(url, body, args.clients, args.seconds, args.max_requests)
            finally:
                stop_server(proc)
            results[mode].update(max_batch=max_batch, batch_wait_ms=wait_ms)
            print(f"{mode}: {results[mode]}", flush=True)
    print(
        f"\n{args.clients} clients, {args.seconds:g} s per mode, {os.cpu_count()} CPUs, "
        f"device {args.device}, {args.model} at {args.image_size} px, 224 px PNG"
    )
    print("| mode | max batch | wait ms | requests/s | p50 ms | p95 ms | requests | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['max_batch']} | {r['batch_wait_ms']:g} | {r['requests_per_s']} | "
            f"{r['p50_ms']} | {r['p95_ms']} | {r['requests']} | {r['errors']} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"clients": args.clients, "results": results}, indent=1))


if __name__ == "__main__":
    main()
