"""Experiment tracking: `--tracking URI` logs train, eval and bench runs to MLflow.

Off by default (`NO_TRACKING`, which does nothing and imports nothing). With a URI, an
`MlflowTracking` checks at once that the store can be written (a local `file:` folder or
`sqlite:` database needs no server), so a bad store fails the command before any training.
Everything is logged from the folders the engine has already written (config.yaml,
history.json, eval/metrics.json, the plots), after the work is done: tracking reads results
and never changes them.

One run per `train` (params: the resolved config flattened; per-epoch loss and validation
metrics; config.yaml) and per `eval` (test metrics, metrics.json, metrics.md, heatmaps.png,
roc.png); a bench grid is one parent run with a child run per cell, and the parent holds
results.csv, tables.md and report.html. Tags: method, preset, dataset, k, seed, backbone,
weights, random_init, anomed version and the git commit when known.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from anomed.errors import AnomedError

EXPERIMENT = "anomed"
MAX_PARAM = 6000  # MLflow's limit on a param value's length
RUN_ARTIFACTS = ("config.yaml",)
EVAL_ARTIFACTS = ("metrics.json", "metrics.md", "heatmaps.png", "roc.png")
GRID_ARTIFACTS = ("results.csv", "tables.md", "report.html", "bench.json")


class GridRun:
    """A bench grid's parent run (this base: tracking off, does nothing)."""

    def cell(self, record: dict[str, Any], out: Path, resumed: bool = False) -> None:
        """Log one cell (finished or failed) as a child run."""

    def finish(self, out: Path, failures: list[dict[str, str]]) -> None:
        """Log the grid's results and report."""


class Tracking:
    """Where runs are logged (this base: nowhere)."""

    enabled = False

    @contextlib.contextmanager
    def grid(self, config: dict[str, Any], out: Path) -> Iterator[GridRun]:
        yield GridRun()

    def train(self, run_dir: Path) -> str | None:
        """Log a saved training run; returns its run id (None when off)."""
        return None

    def eval(self, eval_dir: Path, run_dir: Path, run_id: str | None = None) -> None:
        """Log an evaluation (into `run_id`, else a new run of the checkpoint `run_dir`)."""


NO_TRACKING = Tracking()


def open_tracking(uri: str | None) -> Tracking:
    """The tracking for `--tracking URI` (None or "": off), its store checked at once."""
    return MlflowTracking(uri) if uri else NO_TRACKING


# --------------------------------------------------------------------------- the store


def _local_path(uri: str) -> Path | None:
    """The file or folder of a local store URI (file:, sqlite:, a bare path); None if remote."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""  # sqlite:////abs, sqlite:///rel
        return Path(path) if path and path != ":memory:" else None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (or C:\...)
        return Path(uri)
    return None


def _check_writable(uri: str, path: Path) -> None:
    """The store's file (sqlite) or folder (file:) is there and writable, or can be made."""
    sqlite = uri.startswith("sqlite:")
    if path.exists():
        ok = os.access(path, os.W_OK) and (path.is_file() if sqlite else path.is_dir())
        ok = ok and (not sqlite or os.access(path.parent, os.W_OK))  # its journal beside it
    else:
        probe = path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        ok = probe.is_dir() and os.access(probe, os.W_OK)
    if not ok:
        raise AnomedError(
            f"--tracking {uri}: {path} cannot be written (no permission, or a file is in the "
            "way). Fix: pass a store in a folder you can write, e.g. --tracking "
            "sqlite:///runs/mlflow.db or --tracking file:./runs/mlruns."
        )


def _artifact_root(uri: str, path: Path | None) -> str | None:
    """sqlite stores keep artifacts beside the database (MLflow's default is ./mlruns)."""
    if path is None or not uri.startswith("sqlite:"):
        return None
    return (path.resolve().parent / "mlartifacts").as_uri()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of anomed's source checkout, when it is one (None otherwise)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def _silenced(fn: Callable) -> Callable:
    """MLflow's and SQLAlchemy's deprecation chatter is not the user's business."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)

    return call


def _quiet_mlflow() -> None:
    for name in ("alembic", "mlflow", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_TRACKING_SILENCE_WARNINGS", "true")


class MlflowTracking(Tracking):
    """Runs logged with `mlflow.MlflowClient` into the experiment "anomed" of `uri`."""

    enabled = True

    @_silenced
    def __init__(self, uri: str, experiment: str = EXPERIMENT) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise AnomedError(
                "--tracking needs MLflow, which is not installed. Fix: pip install "
                "'anomed[tracking]' (or leave --tracking out)."
            ) from exc
        path = _local_path(uri)
        if path is not None:
            _check_writable(uri, path)
        _quiet_mlflow()
        if uri.startswith("file:") or (path is not None and not uri.startswith("sqlite:")):
            # MLflow 3 keeps its file store in maintenance mode, behind this switch; the user
            # chose a file store, so it is allowed (sqlite is the recommended local store)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(experiment, _artifact_root(uri, path))
            )
        except Exception as exc:  # any store failure is the user's store, said on one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AnomedError(
                f"--tracking {uri}: cannot use this MLflow store ({first[:300]}). Fix: pass a "
                "store you can write (sqlite:///PATH.db or file:FOLDER, no server needed) or "
                "a running tracking server's http:// address."
            ) from exc

    # ------------------------------------------------------------------ runs

    @_silenced
    def _start(self, name: str, tags: dict[str, str], parent: str | None = None) -> str:
        tags = {**tags, "mlflow.runName": name}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        return run.info.run_id

    @_silenced
    def _log(
        self,
        run_id: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        points = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _finite(v)]
        for row in history or []:
            step = int(row.get("epoch", 0))
            points += [
                Metric(k, float(v), now, step)
                for k, v in row.items()
                if k != "epoch" and _finite(v)
            ]
        items = [Param(k, v) for k, v in flatten(params or {}).items()]
        for i in range(0, max(len(items), len(points)), 100):
            self.client.log_batch(run_id, metrics=points[i : i + 100], params=items[i : i + 100])

    def _artifacts(
        self, run_id: str, folder: Path, names: tuple[str, ...], under: str = ""
    ) -> None:
        for name in names:
            if (folder / name).is_file():
                self.client.log_artifact(run_id, str(folder / name), under or None)

    @_silenced
    def train(self, run_dir: Path) -> str | None:
        config = _run_config(run_dir)
        run_id = self._start(f"train {run_dir.name}", run_tags(config))
        history = _read_json(run_dir / "history.json")
        history = history if isinstance(history, list) else []
        self._log(run_id, params={**config, **_fit_params(run_dir)}, history=history)
        self._artifacts(run_id, run_dir, RUN_ARTIFACTS)
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    @_silenced
    def eval(self, eval_dir: Path, run_dir: Path, run_id: str | None = None) -> None:
        metrics = _read_json(eval_dir / "metrics.json") or {}
        if run_id is None:
            config = _run_config(run_dir)
            tags = run_tags(config, dataset=str(metrics.get("dataset") or ""))
            run_id = self._start(f"eval {run_dir.name} on {metrics.get('dataset', '?')}", tags)
            self._log(run_id, params=config)
            self._artifacts(run_id, run_dir, RUN_ARTIFACTS)
        self._log(run_id, metrics={f"test_{k}": v for k, v in metrics.items()})
        self._artifacts(run_id, eval_dir, EVAL_ARTIFACTS, "eval")
        self.client.set_terminated(run_id, "FINISHED")

    @contextlib.contextmanager
    def grid(self, config: dict[str, Any], out: Path) -> Iterator[GridRun]:
        tags = {**_common_tags(), "anomed.kind": "bench", "anomed.output": str(out)}
        run_id = self._start(f"bench {out.resolve().name}", tags)
        self._log(run_id, params=config)
        status = "KILLED"
        try:
            yield _MlflowGrid(self, run_id)
            status = "FINISHED"
        except Exception:
            status = "FAILED"
            raise
        finally:
            self.client.set_terminated(run_id, status)


class _MlflowGrid(GridRun):
    def __init__(self, tracking: MlflowTracking, run_id: str) -> None:
        self.t, self.run_id = tracking, run_id

    @_silenced
    def cell(self, record: dict[str, Any], out: Path, resumed: bool = False) -> None:
        if not record:
            return
        folder = out / str(record.get("cell_dir", ""))
        config = _run_config(folder) or record.get("settings") or {}
        tags = run_tags(config, dataset=str(record.get("dataset", "")))
        tags.update({"anomed.status": str(record.get("status", "ok"))})
        if resumed:
            tags["anomed.resumed"] = "true"  # finished by an earlier run into this folder
        if record.get("error"):
            tags["anomed.error"] = str(record["error"])[:MAX_PARAM]
        label = " ".join(
            str(record.get(k, "?")) for k in ("method", "variant", "dataset") if record.get(k)
        )
        name = f"{label} k={record.get('k')} s={record.get('seed')}"
        run_id = self.t._start(name, tags, parent=self.run_id)
        history = _read_json(folder / "history.json") if record.get("status") != "failed" else []
        metrics = {f"test_{k}": record.get(k) for k in _metric_keys()}
        metrics.update({k: record.get(k) for k in ("train_seconds", "eval_seconds", "n_test")})
        self.t._log(run_id, config, metrics, history if isinstance(history, list) else [])
        self.t._artifacts(run_id, folder, (*RUN_ARTIFACTS, "cell.json", "failed.json"))
        self.t._artifacts(run_id, folder / "eval", EVAL_ARTIFACTS, "eval")
        failed = record.get("status") == "failed"
        self.t.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    @_silenced
    def finish(self, out: Path, failures: list[dict[str, str]]) -> None:
        self.t.client.set_tag(self.run_id, "anomed.failed_cells", str(len(failures)))
        self.t._artifacts(self.run_id, out, GRID_ARTIFACTS)


# --------------------------------------------------------------------------- helpers


def _metric_keys() -> tuple[str, ...]:
    from anomed.metrics import METRIC_KEYS

    return tuple(METRIC_KEYS)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 0.001}} -> {"train.lr": "0.001"}; values as text within MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = text[:MAX_PARAM]
    return flat


@functools.lru_cache(maxsize=1)
def _version() -> str:
    from anomed._version import __version__

    return __version__


def _common_tags() -> dict[str, str]:
    tags = {"anomed.version": _version()}
    commit = git_commit()
    if commit:
        tags["anomed.git_commit"] = commit
    return tags


def run_tags(config: dict[str, Any], dataset: str = "") -> dict[str, str]:
    """method, preset, dataset, k, seed, backbone, weights, random_init, version, commit."""
    data, backbone = config.get("data") or {}, config.get("backbone") or {}
    pretrained = backbone.get("pretrained")
    root = str(data.get("root") or "")
    tags = {
        "method": str(config.get("method", "")),
        "preset": str(config.get("preset", "")),
        "dataset": dataset or Path(root.rstrip("/\\")).name,
        "k": str(data.get("k", "")),
        "seed": str(data.get("seed", "")),
        "backbone": str(backbone.get("model", "")),
        "weights": str(pretrained or "random-init"),
        "random_init": "true" if not pretrained else "false",
    }
    return {**tags, **_common_tags()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved run configuration saved with a checkpoint ({} if none)."""
    saved = _read_yaml(run_dir / "config.yaml")
    run = saved.get("run")
    return run if isinstance(run, dict) else {}


def _fit_params(run_dir: Path) -> dict[str, Any]:
    """What training settled on: the schedule, the chosen epoch, the threshold."""
    saved = _read_yaml(run_dir / "config.yaml")
    return {k: saved[k] for k in ("fit", "calibration", "class_name") if k in saved}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
