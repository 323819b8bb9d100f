"""Every GPU figure anomed needs, in one prepared run: one JSON under benchmarks/results/.

A GPU is lent to this work only sometimes, for about 15 minutes in all, so everything the speed
targets ask for runs from this one script, each step guarded (a failing step is recorded with its
error and the next one runs) and the whole run bounded by `--budget-s` (steps past it are recorded
as skipped). Weights are random (speed does not depend on them; no metric here says anything about
detection quality).

    # on CPU first: every step on the tiny model, in under a minute
    python benchmarks/gpu_check.py --dry-run

    # on the GPU machine (ViT-L-14 at 240 px, bf16): at most ~8 minutes on an H100
    python benchmarks/gpu_check.py

Steps (targets from issue 29 in brackets):
  env          GPU name, driver, torch / onnxruntime versions and providers
  speed        img/s, latency, peak memory at batch 1/32/128 for mediclip mvfa madclip condprompt
               ppad memorybank: fp32 and bf16 autocast, bf16 with the frozen tower's weights cast
               to bf16, and bf16 + torch.compile  [MediCLIP >= 3,000 img/s at batch 128]
  adapt        k=16 adaptation with synthesis and validation, bf16, feature cache on
               [MediCLIP <= 10 s, MVFA <= 45 s, every method <= 8 GiB peak]
  bf16_metrics MediCLIP trained on phantoms with and without bf16 autocast: metrics side by side
  serve        benchmarks/serve_load.py on the GPU (16 clients)  [p95 latency]
  onnx         benchmarks/onnx_speed.py with the CUDA provider, where this onnxruntime has it

The device machine has its own torch (not this project's pin): run from the source tree with
`PYTHONPATH=src`, carrying the few missing packages as wheels (see the device tool's README):
open_clip_torch ftfy nibabel pydicom fastapi uvicorn python-multipart fastapi-offline starlette.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

METHODS = ("mediclip", "mvfa", "madclip", "condprompt", "ppad", "memorybank")
COMPILED = ("mediclip", "mvfa")  # compile takes a minute a model: the two targets only
TARGETS = {
    "mediclip_img_per_s_b128": 3000.0,
    "mediclip_adapt_s": 10.0,
    "mvfa_adapt_s": 45.0,
    "adapt_peak_gib": 8.0,
}


class Plan:
    """What one run measures: the full GPU plan or the CPU dry run of every step."""

    def __init__(self, dry_run: bool, model: str, image_size: int) -> None:
        self.dry_run = dry_run
        self.model = "anomed-tiny" if dry_run else model
        self.image_size = 112 if dry_run else image_size
        self.device = "cpu" if dry_run else "cuda"
        self.batch_sizes = (1, 2) if dry_run else (1, 32, 128)
        # the dry run compiles one model and adapts the two methods with targets
        self.compiled = COMPILED[:1] if dry_run else COMPILED
        self.adapted = ("mediclip", "mvfa") if dry_run else METHODS
        self.iters = 1 if dry_run else 10
        self.epochs = 1 if dry_run else None  # None: each method's own k=16 schedule
        self.k = 2 if dry_run else 16
        self.serve_seconds = 3 if dry_run else 20
        self.serve_clients = 2 if dry_run else 16


def step_env(plan: Plan) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["driver"] = _nvidia_smi("driver_version")
        info["gpu_memory_mib"] = _nvidia_smi("memory.total")
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def _speed_config(plan: Plan, method: str, **changes: object):
    from anomed.backbone import BackboneConfig
    from anomed.engine.speed import SpeedConfig

    base = {
        "method": method,
        "backbone": BackboneConfig(model=plan.model, image_size=plan.image_size),
        "device": plan.device,
        "batch_sizes": plan.batch_sizes,
        "precisions": ("fp32", "bf16"),
        "iters": plan.iters,
        "k": plan.k,
        "epochs": plan.epochs,
        "adapt": False,
    }
    return SpeedConfig(**{**base, **changes})


def speed_variants(plan: Plan) -> list[tuple[str, str, dict]]:
    """(method, variant, SpeedConfig changes) for every inference row the plan times."""
    rows = []
    for method in METHODS:
        rows.append((method, "autocast", {}))
        rows.append((method, "bf16_weights", {"precisions": ("bf16",), "frozen_bf16": True}))
        if method in plan.compiled:
            rows.append(
                (
                    method,
                    "bf16_weights+compile",
                    {
                        "precisions": ("bf16",),
                        "frozen_bf16": True,
                        "compile": True,
                    },
                )
            )
    return rows


def step_speed(plan: Plan, method: str, variant: str, changes: dict) -> dict:
    from anomed.engine.speed import run_speed

    report = run_speed(_speed_config(plan, method, **changes))
    return {"variant": variant, "inference": report["inference"], "summary": report["summary"]}


def step_adapt(plan: Plan, method: str) -> dict:
    from anomed.engine.speed import run_speed

    cfg = _speed_config(
        plan, method, adapt=True, batch_sizes=(1,), precisions=("bf16",), cache=(True,), iters=1
    )
    return {"adaptation": run_speed(cfg)["adaptation"]}


def step_bf16_metrics(plan: Plan) -> dict:
    """MediCLIP on brain phantoms, bf16 autocast vs fp32: same seed, same shots."""
    import anomed
    from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset

    out = {}
    with tempfile.TemporaryDirectory(prefix="anomed-gpu-check-") as tmp:
        data = Path(tmp) / "phantom"
        n = 12 if plan.dry_run else 40
        write_phantom_dataset(
            data, PhantomConfig(n_train=n, n_test_normal=n // 2, n_test_abnormal=n // 2, seed=0)
        )
        for amp in (False, True):
            run = Path(tmp) / f"run-amp{int(amp)}"
            overrides = {
                "backbone.model": plan.model,
                "backbone.image_size": plan.image_size,
                "train.amp": amp,
                "train.device": plan.device,
                "output_dir": str(run),
                "data.n_val": 2 if plan.dry_run else 8,
            }
            if plan.epochs:
                overrides["train.epochs"] = plan.epochs
            start = time.perf_counter()
            anomed.train(data, "mediclip", k=plan.k, seed=0, overrides=overrides)
            metrics = anomed.evaluate(run, device=plan.device)
            out["bf16" if amp else "fp32"] = {
                "seconds": time.perf_counter() - start,
                **{key: metrics.get(key) for key in ("image_auroc", "pixel_auroc", "pixel_aupro")},
            }
    return out


def step_script(plan: Plan, name: str, args: list[str], output: Path) -> dict:
    """Run one of the sibling benchmark scripts; its JSON (or its output's tail) is the row."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE.parent / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(HERE / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    row = {"returncode": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-3000:]}
    if output.exists():
        row["result"] = json.loads(output.read_text())
    return row


def step_serve(plan: Plan, tmp: Path) -> dict:
    out = tmp / "serve.json"
    args = [
        "--clients",
        str(plan.serve_clients),
        "--seconds",
        str(plan.serve_seconds),
        "--device",
        plan.device,
        "--model",
        plan.model,
        "--image-size",
        str(plan.image_size),
        "--json",
        str(out),
    ]
    return step_script(plan, "serve_load.py", args, out)


def step_onnx(plan: Plan, tmp: Path) -> dict:
    import onnxruntime

    if (
        plan.device == "cuda"
        and "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    ):
        return {"skipped": "this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu needed)"}
    out = tmp / "onnx"
    args = [
        "--methods",
        "mediclip",
        "--model",
        plan.model,
        "--image-size",
        str(plan.image_size),
        "--device",
        plan.device,
        "--iters",
        str(plan.iters),
        "--output",
        str(out),
        "--batch-sizes",
        *map(str, plan.batch_sizes),
    ]
    row = step_script(plan, "onnx_speed.py", args, out / "mediclip" / "speed.json")
    return row


def verdicts(results: dict) -> dict:
    """Each target beside the figure measured for it (None where the step did not run)."""

    def best(method: str, variant_rows: list[dict]) -> float | None:
        rates = [
            r["img_per_s"]
            for v in variant_rows
            for r in v.get("inference", [])
            if r.get("batch") == 128 and "img_per_s" in r
        ]
        return max(rates) if rates else None

    speed = results.get("speed", {})
    adapt = results.get("adapt", {})

    def adapt_s(method: str) -> float | None:
        rows = adapt.get(method, {}).get("adaptation", [])
        return min((r["seconds"] for r in rows), default=None)

    peaks = [r["peak_memory_mib"] / 1024 for m in adapt.values() for r in m.get("adaptation", [])]
    figures = {
        "mediclip_img_per_s_b128": best("mediclip", speed.get("mediclip", [])),
        "mediclip_adapt_s": adapt_s("mediclip"),
        "mvfa_adapt_s": adapt_s("mvfa"),
        "adapt_peak_gib": max(peaks) if peaks else None,
    }
    out = {}
    for key, target in TARGETS.items():
        value = figures[key]
        higher = key.endswith("img_per_s_b128")
        met = None if value is None else (value >= target if higher else value <= target)
        out[key] = {"target": target, "measured": value, "met": met}
    return out


class Runner:
    """Runs steps in order within the time budget; a failing step becomes an error row."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.log: list[dict] = []

    def run(self, name: str, fn: Callable[[], dict]) -> dict:
        if time.monotonic() > self.deadline:
            row = {"skipped": "time budget spent"}
        else:
            start = time.perf_counter()
            try:
                row = fn()
            except Exception as exc:  # noqa: BLE001 - one broken step must not lose the rest
                row = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-2000:],
                }
            row["step_seconds"] = round(time.perf_counter() - start, 2)
        state = "skipped" if "skipped" in row else "error" if "error" in row else "ok"
        print(f"[{state:7}] {name} ({row.get('step_seconds', 0)} s)", flush=True)
        self.log.append({"step": name, "state": state})
        return row


def run_all(plan: Plan, budget_s: float) -> dict:
    import torch

    torch.manual_seed(0)
    if plan.dry_run:
        os.environ.setdefault("ANOMED_CPU_BF16", "1")  # the bf16 rows run on CPU too
    runner = Runner(budget_s)
    results: dict = {"plan": vars(plan), "env": runner.run("env", lambda: step_env(plan))}
    results["speed"] = {}
    for method, variant, changes in speed_variants(plan):
        row = runner.run(
            f"speed {method} {variant}",
            lambda m=method, v=variant, c=changes: step_speed(plan, m, v, c),
        )
        results["speed"].setdefault(method, []).append({"variant": variant, **row})
    results["adapt"] = {
        m: runner.run(f"adapt {m}", lambda m=m: step_adapt(plan, m)) for m in plan.adapted
    }
    results["bf16_metrics"] = runner.run("bf16 metrics", lambda: step_bf16_metrics(plan))
    with tempfile.TemporaryDirectory(prefix="anomed-gpu-check-") as tmp:
        results["serve"] = runner.run("serve", lambda: step_serve(plan, Path(tmp)))
        results["onnx"] = runner.run("onnx", lambda: step_onnx(plan, Path(tmp)))
    results["targets"] = verdicts(results)
    results["steps"] = runner.log
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="every step on the tiny model, on CPU, in under a minute",
    )
    parser.add_argument("--model", default="ViT-L-14")
    parser.add_argument("--image-size", type=int, default=240)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=480.0,
        help="steps that would start after this many seconds are skipped",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="default: benchmarks/results/gpu-check-<time>.json "
        "(dry run: runs/gpu-check-dry-run.json)",
    )
    args = parser.parse_args(argv)
    plan = Plan(args.dry_run, args.model, args.image_size)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or (
        Path("runs/gpu-check-dry-run.json")
        if args.dry_run
        else HERE / "results" / f"gpu-check-{stamp}.json"
    )
    results = run_all(plan, float("inf") if args.dry_run else args.budget_s)
    results["random_init"] = True
    results["note"] = "random-init weights: speed and memory only; metrics test the pipeline"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1, default=str, allow_nan=False))
    print(f"wrote {output}")
    for key, verdict in results["targets"].items():
        print(
            f"  {key}: measured {verdict['measured']} vs target {verdict['target']} "
            f"-> {'met' if verdict['met'] else 'not met' if verdict['met'] is False else 'n/a'}"
        )
    failed = [s["step"] for s in results["steps"] if s["state"] == "error"]
    if failed:
        print(f"{len(failed)} step(s) failed: {', '.join(failed)} (errors in the JSON)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
