"""The service behind the routes: loaded models, the study store and the upload jobs.

`Service.open` loads every checkpoint once (GPU when present), runs one warm-up pass and starts
its batcher; requests then only stage, score and record. Staging (copy, sniff, header checks,
unzip) happens in the request, so a bad file is refused at once; scoring of a multi-file study
runs in a job whose progress is stored in the database.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from anomed.errors import AnomedError
from anomed.export.runtime import load_runtime_detector
from anomed.serve.batching import BatcherClosed, MicroBatcher
from anomed.serve.config import ServeConfig
from anomed.serve.errors import ApiError, public_message
from anomed.serve.store import Store
from anomed.serve.studies import ServedModel, score_study
from anomed.serve.uploads import StagedFile, check_contents, clean_label, stage_upload

log = logging.getLogger("anomed.serve")


def model_names(runs: list[str]) -> list[tuple[str, Path]]:
    """`NAME=FOLDER` or `FOLDER` -> unique (name, folder); a folder called `checkpoint` is
    named after its parent (runs/demo/checkpoint -> demo)."""
    named: list[tuple[str, Path]] = []
    for spec in runs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or "/" in name:
            folder, name = spec, ""
        path = Path(folder)
        base = name or (path.parent.name if path.name == "checkpoint" else path.name)
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model"
        unique, n = base, 2
        while unique in {existing for existing, _ in named}:
            unique, n = f"{base}-{n}", n + 1
        named.append((unique, path))
    return named


@dataclass
class Service:
    cfg: ServeConfig
    models: dict[str, ServedModel]
    store: Store
    data_dir: Path
    jobs: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = ThreadPoolExecutor(self.cfg.job_workers, thread_name_prefix="anomed-job")
        self.closing = threading.Event()  # a stop leaves running jobs "interrupted"

    @classmethod
    def open(cls, cfg: ServeConfig) -> Service:
        """Load every checkpoint (AnomedError on a bad one) and open the store."""
        if not cfg.runs:
            raise AnomedError("anomed serve: no checkpoint given. Fix: anomed serve RUN_FOLDER.")
        data_dir = Path(cfg.data_dir).expanduser().absolute()
        try:
            (data_dir / "studies").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AnomedError(
                f"--data-dir {cfg.data_dir}: cannot create it ({exc.strerror}). "
                "Fix: pick a folder you can write to."
            ) from exc
        models = {}
        for name, path in model_names(cfg.runs):
            detector = load_runtime_detector(
                path, cfg.runtime, cfg.device, cfg.max_batch, domain_check=cfg.domain_check
            )
            size = detector.image_size
            detector.run_batch(np.zeros((1, size, size, 3), np.float32))  # warm-up pass
            batcher = MicroBatcher(
                detector.run_batch, cfg.max_batch, cfg.batch_wait_ms / 1000, name
            )
            models[name] = ServedModel(name, path, detector, batcher)
        return cls(cfg, models, Store(data_dir / "anomed-serve.sqlite"), data_dir)

    def close(self) -> None:
        self.closing.set()
        self.jobs.shutdown(wait=True, cancel_futures=True)
        for model in self.models.values():
            model.batcher.close()
        self.store.close()

    def model(self, name: str | None) -> ServedModel:
        """The named model; the only one when `name` is None."""
        if name is None and len(self.models) == 1:
            return next(iter(self.models.values()))
        if name is None:
            raise ApiError(
                400, f"several models are loaded; pass ?model= one of {list(self.models)}."
            )
        if name not in self.models:
            raise ApiError(400, f"no model named {name[:80]!r}; loaded: {list(self.models)}.")
        return self.models[name]

    def study_dir(self, study_id: str) -> Path:
        return self.data_dir / "studies" / study_id

    def stage(self, source: BinaryIO, filename: str | None) -> tuple[str, StagedFile]:
        """Store one upload under a new study id and check it; ApiError when refused."""
        label = clean_label(filename)
        study_id = secrets.token_hex(8)
        folder = self.study_dir(study_id)
        try:
            staged = stage_upload(source, label, folder, self.cfg.max_upload_bytes)
            return study_id, check_contents(staged, self.cfg)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def score(
        self, model: ServedModel, study_id: str, staged: StagedFile, job_id: str | None = None
    ) -> dict[str, Any]:
        """Score a staged upload and record it; ApiError 422 when it cannot be read."""
        folder = self.study_dir(study_id)
        try:
            record = score_study(model, staged, study_id)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise _as_api_error(exc, staged, folder) from exc
        if staged.kind == "zip":
            shutil.rmtree(folder / "series", ignore_errors=True)  # the zip itself is kept
        record["job_id"] = job_id
        self.store.add_study(record)
        return self.store.study(study_id) or record

    def submit_job(
        self, model: ServedModel, staged: list[tuple[str, StagedFile]], refused: list[dict]
    ) -> str:
        """Queue the scoring of staged uploads; `refused` lists the files refused at staging."""
        job_id = secrets.token_hex(8)
        self.store.add_job(job_id, model.name, len(staged) + len(refused))
        self.store.update_job(job_id, failed=len(refused), done=len(refused), errors=refused)
        self.jobs.submit(self._run_job, job_id, model, staged, refused)
        return job_id

    def _run_job(self, job_id, model, staged, refused) -> None:
        self.store.update_job(job_id, status="running")
        studies, errors, status = [], list(refused), "done"
        try:
            for study_id, item in staged:
                if self.closing.is_set():
                    status = "interrupted"
                    break
                try:
                    self.score(model, study_id, item, job_id)
                    studies.append(study_id)
                except ApiError as exc:
                    errors.append(
                        {"name": item.label, "status": exc.status, "message": exc.message}
                    )
                self.store.update_job(
                    job_id,
                    done=len(studies) + len(errors),
                    failed=len(errors),
                    studies=studies,
                    errors=errors,
                )
        finally:
            self.store.update_job(job_id, status=status, finished=time.time())


def _as_api_error(exc: BaseException, staged: StagedFile, folder: Path) -> BaseException:
    """A failure while scoring, as the answer the client gets."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BatcherClosed):
        return ApiError(503, "the server is shutting down; try again later.")
    if isinstance(exc, AnomedError):
        paths = [p for p in (staged.path, staged.target, folder) if p is not None]
        return ApiError(422, public_message(exc, paths, staged.label))
    if isinstance(exc, Exception):  # a decoder crashing on a hostile file: no traceback out
        log.exception("scoring %s failed", staged.label)
        return ApiError(422, f"{staged.label}: could not be processed ({type(exc).__name__}).")
    return exc
