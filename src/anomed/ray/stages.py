"""The three Ray stages after listing: decode (CPU tasks), score (model actors), write (CPU tasks).

Numbers match the local engine because each stage calls the code it calls: `read_image` and
`prepare_image` decode and resize, `Detector.score_batch` and `Detector.result` score and
decide (a non-finite score is an error row, never "normal"), `predict_volume` scores volumes.
Each input is isolated: a failure becomes that row's `error`, and the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomed.data.io import read_image
from anomed.engine.detector import prepare_image
from anomed.engine.domain import refuse_message
from anomed.engine.predict import display_path
from anomed.errors import AnomedError
from anomed.ray.inputs import to_columns
from anomed.ray.shards import ATTEMPTS

CRASH_ENV = "ANOMED_RAY_CRASH_DIR"  # fault injection for tests (see Scorer._maybe_crash)
MAX_ATTEMPTS = 3  # a batch that killed its actor this often becomes error rows
SCORED = (
    "status",
    "error",
    "score",
    "decision",
    "domain_distance",
    "in_domain",
    "slice_scores",
    "overlay",
    "slices",
    "amap",
)


def _domain_columns(distance: float | None, flag: bool | None) -> dict:
    """The guard's two columns as the writer reads them (NaN / "" for not computed)."""
    return {
        "domain_distance": np.nan if distance is None else distance,
        "in_domain": "" if flag is None else ("true" if flag else "false"),
    }


def _message(exc: Exception) -> str:
    """An input's error text: AnomedError messages as they are, anything else with its type."""
    return str(exc) if isinstance(exc, AnomedError) else f"{type(exc).__name__}: {exc}"


def _poison_message() -> str:
    return (
        f"the model worker died {MAX_ATTEMPTS} times on the batch holding this input (a crash "
        "while decoding or scoring, e.g. out of memory); the batch was given up. Fix: check the "
        "batch's inputs and memory, then rerun with --retry-errors."
    )


def decode_batch(batch: dict[str, np.ndarray], image_size: int) -> dict[str, np.ndarray]:
    """CPU stage: read and resize each image row -> `pixels`, (S, S, 3) float32 as bytes.

    Other rows (volumes, listing errors, skipped) pass through with empty pixels; a file that
    cannot be decoded keeps its row with the reason in `error`."""
    pixels = np.empty(len(batch["kind"]), dtype=object)
    errors = np.array(batch["error"], dtype=object)  # object: a message never truncated
    for i, (kind, source) in enumerate(zip(batch["kind"], batch["source"], strict=True)):
        pixels[i] = b""
        if kind != "image" or errors[i]:
            continue
        path = os.fsdecode(source)
        try:
            image = prepare_image(read_image(path), image_size, display_path(path))
            pixels[i] = np.ascontiguousarray(image, dtype=np.float32).tobytes()
        except Exception as exc:  # one bad file is one error row, never a failed job
            errors[i] = _message(exc)
    return {**batch, "error": errors, "pixels": pixels}


@dataclass(frozen=True)
class ScorerSpec:
    """What each model actor needs to build its detector and place its outputs."""

    run: str  # checkpoint folder (visible on every node)
    device: str  # "cpu" or "cuda"
    batch_size: int
    output_dir: str  # OUT (visible on every node)
    keep_maps: bool  # ship image maps to the writer (overlays) and keep volume NIfTI maps
    domain_check: str = "warn"  # warn | refuse | off (engine.domain)


class Scorer:
    """A Ray Data model actor: the checkpoint is loaded once, then batch after batch is scored."""

    def __init__(self, spec: ScorerSpec) -> None:
        from anomed.engine.detector import load_detector

        self.spec = spec
        self.detector = load_detector(
            spec.run, spec.device, spec.batch_size, domain_check=spec.domain_check
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["kind"])
        rows = [
            {"status": "error" if batch["error"][i] else "ok", "error": batch["error"][i]}
            for i in range(n)
        ]
        for row in rows:
            row.update(score=np.nan, decision="", slice_scores="", overlay="", slices="")
            row.update(domain_distance=np.nan, in_domain="")
            row["amap"] = b""
        out = {k: v for k, v in batch.items() if k != "pixels"}
        todo = [i for i in range(n) if batch["kind"][i] in ("image", "volume")]
        todo = [i for i in todo if not batch["error"][i]]
        for i in range(n):
            if batch["kind"][i] == "input":
                rows[i]["status"] = "error"
        if not todo:  # skipped, excluded and failed rows only (most batches of a resume)
            return {**out, **to_columns(rows, SCORED)}
        marker = self._count_attempt(batch)
        if marker is None:
            for i in todo:
                rows[i].update(status="error", error=_poison_message())
            return {**out, **to_columns(rows, SCORED)}
        self._maybe_crash()
        images = [i for i in todo if batch["kind"][i] == "image"]
        for start in range(0, len(images), self.spec.batch_size):
            self._score_images(batch, images[start : start + self.spec.batch_size], rows)
        for i in todo:
            if batch["kind"][i] == "volume":
                rows[i].update(self._score_volume(batch["source"][i], batch["key_id"][i]))
        marker.unlink(missing_ok=True)
        return {**out, **to_columns(rows, SCORED)}

    def _count_attempt(self, batch: dict[str, np.ndarray]) -> Path | None:
        """Count this start of the batch in OUT/.attempts/; None when it is one too many."""
        ids = "\n".join(sorted(str(k) for k in batch["key_id"]))
        name = hashlib.blake2b(ids.encode(), digest_size=12).hexdigest()
        marker = Path(self.spec.output_dir) / ATTEMPTS / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        try:
            seen = int(marker.read_text() or 0)
        except (OSError, ValueError):
            seen = 0
        if seen >= MAX_ATTEMPTS:
            marker.unlink(missing_ok=True)
            return None
        marker.write_text(str(seen + 1))
        return marker

    def _score_images(self, batch: dict, idx: list[int], rows: list[dict]) -> None:
        size = self.detector.image_size
        images = np.stack(
            [np.frombuffer(batch["pixels"][i], np.float32).reshape(size, size, 3) for i in idx]
        )  # (B, S, S, 3)
        scores, maps, domain = self.detector.run_batch(images)  # (B,), (B, S, S), (B,) | None
        for j, (i, score, amap) in enumerate(zip(idx, scores, maps, strict=True)):
            distance = None if domain is None else float(domain[j])
            pred = self.detector.result(str(batch["path"][i]), float(score), amap, distance)
            rows[i].update(_domain_columns(pred.domain_distance, pred.in_domain))
            if not pred.ok:
                rows[i].update(status="error", error=pred.error)
                continue
            rows[i].update(score=pred.score, decision=pred.decision or "")
            if self.spec.keep_maps:
                rows[i]["amap"] = np.ascontiguousarray(amap, dtype=np.float32).tobytes()

    def _score_volume(self, source: bytes, kid: str) -> dict:
        """predict_volume into OUT/volumes/<key id>/ (cleared first, so a retried batch leaves
        one map), or into a temporary folder when maps were not asked for."""
        from anomed.engine.volumes import predict_volume

        out = Path(self.spec.output_dir)
        folder = out / "volumes" / kid[:16]
        scratch = None if self.spec.keep_maps else tempfile.mkdtemp(prefix="anomed-vol-")
        target = Path(scratch) if scratch else folder
        shutil.rmtree(target, ignore_errors=True)
        try:
            vol = predict_volume(self.detector, os.fsdecode(source), target)
        except Exception as exc:  # one bad volume is one error row
            return {"status": "error", "error": _message(exc)}
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        pairs = [[i, s] for i, s in sorted(vol.slice_scores.items())]
        flag, _ = self.detector.judge(vol.domain_distance)
        domain = _domain_columns(vol.domain_distance, flag)
        if flag is False and self.detector.domain_check == "refuse":
            why = refuse_message(
                display_path(os.fsdecode(source)),
                vol.domain_distance,
                self.detector.domain_threshold,
            )
            return {"status": "error", "error": why, **domain}
        row = {
            **domain,
            "score": vol.score,
            "decision": vol.decision or "",
            "slice_scores": json.dumps(pairs),
        }
        if not scratch:
            row["overlay"] = str(vol.map_path.relative_to(out))
            row["slices"] = str(vol.csv_path.relative_to(out))
        return row

    @staticmethod
    def _maybe_crash() -> None:
        """Tests kill an actor mid-run: when $ANOMED_RAY_CRASH_DIR/crash exists, the first actor
        to rename it dies at once (os._exit, no cleanup), as a lost node would."""
        folder = os.environ.get(CRASH_ENV)
        if not folder:
            return
        try:
            os.rename(os.path.join(folder, "crash"), os.path.join(folder, "crashed"))
        except OSError:
            return
        os._exit(17)
