"""The output of a Ray run: Parquet shards under OUT/predictions/, written so a rerun can trust
them.

- A shard is written to a hidden temporary file and renamed into place: a killed writer never
  leaves a partial shard that counts as done (leftovers are removed at the next start).
- A shard's name is a hash of the input keys it holds, so a retried batch replaces its own
  shard instead of adding a second copy; `compact` removes any duplicate that remains (the same
  key twice, or an older row of a path scored again after it changed).
- OUT/ray_run.json names the checkpoint (run id = a hash of its manifest.json); a rerun into an
  OUT written by another checkpoint is refused, never mixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from anomed.data.io import read_image
from anomed.engine.checkpoint import MANIFEST
from anomed.engine.domain import OUT_OF_DOMAIN
from anomed.errors import AnomedError
from anomed.outputs import check_output_dir, clear_dir, temp_sibling, write_json
from anomed.ray.inputs import WRITTEN_KINDS

SHARDS = "predictions"
RUN_FILE = "ray_run.json"
ATTEMPTS = ".attempts"  # OUT/.attempts/<batch id>: how often a model actor started a batch
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("status", pa.string()),  # "ok" | "error"
        ("error", pa.string()),
        ("score", pa.float64()),
        ("decision", pa.string()),  # "abnormal" | "normal" | null (error / no threshold)
        ("threshold", pa.float64()),
        ("domain_distance", pa.float64()),  # distance to the training domain (engine.domain)
        ("in_domain", pa.bool_()),  # null: not checked (--domain-check off, or no guard)
        ("run_id", pa.string()),
        ("kind", pa.string()),  # "image" | "volume" | "input" (could not be listed)
        ("slice_scores", pa.list_(pa.struct([("slice", pa.int32()), ("score", pa.float64())]))),
        ("overlay", pa.string()),  # overlay PNG or anomaly NIfTI, relative to OUT
        ("slices", pa.string()),  # a volume's per-slice CSV, relative to OUT
        ("key", pa.string()),  # absolute path | size | mtime_ns: the resume key
        ("key_id", pa.string()),
        ("scored_at", pa.timestamp("ms", tz="UTC")),
    ]
)
COUNTS = ("written", "ok", "error", "abnormal", "skipped", "excluded")


def run_id(checkpoint: str | Path) -> str:
    """16 hex digits of the SHA-256 of the checkpoint's manifest.json (weights + config)."""
    return hashlib.sha256((Path(checkpoint) / MANIFEST).read_bytes()).hexdigest()[:16]


def check_output(
    path: str | Path,
    rid: str,
    overwrite: bool,
    inputs: Sequence[str | Path],
    keep: Sequence[str | Path] = (),
    maps: bool = False,
) -> Path:
    """OUT, checked before any work and left untouched: refused when it is a file, unwritable,
    inside an input folder, holding an input or a `keep` path (the checkpoint, manifests), or
    holds anything but an earlier Ray run of the same checkpoint and the same `maps` setting
    (the resume case: rows it skips would otherwise lack or carry maps unlike the rest) unless
    --overwrite."""
    out = check_output_dir(path, overwrite=True, inputs=list(inputs), protect=keep)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        earlier, earlier_maps = _read_run_file(out)
        if earlier is None:
            raise AnomedError(
                f"--output {path}: folder is not empty and holds no earlier `--engine ray` run "
                f"({RUN_FILE} missing). Fix: pick another --output, or pass --overwrite."
            )
        if earlier != rid:
            raise AnomedError(
                f"--output {path}: holds results of another checkpoint (run id {earlier}; "
                f"this checkpoint is {rid}), which a resume would mix. Fix: pick another "
                "--output, or pass --overwrite to replace them."
            )
        if earlier_maps is not None and earlier_maps != maps:
            given, before = ("with", "without") if maps else ("without", "with")
            raise AnomedError(
                f"--output {path}: the earlier run there was {before} --maps; resuming {given} "
                "it would leave the rows already done unlike the new ones. Fix: repeat the "
                "earlier setting, pick another --output, or pass --overwrite."
            )
    return out


def open_output(out: Path, overwrite: bool, run_info: dict) -> None:
    """Once Ray is up: empty OUT (--overwrite), drop what a killed writer left, name the run."""
    if overwrite:
        clear_dir(out)
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    for stale in (out / SHARDS).glob(".part-*"):  # a writer killed before its rename
        stale.unlink(missing_ok=True)
    clear_attempts(out)
    write_json(out / RUN_FILE, run_info)


def clear_attempts(out: Path) -> None:
    """Forget batch start counts (they only mean something within one run)."""
    shutil.rmtree(out / ATTEMPTS, ignore_errors=True)


def _read_run_file(out: Path) -> tuple[str | None, bool | None]:
    """The earlier run's id and its --maps setting (None: not recorded)."""
    try:
        record = json.loads((out / RUN_FILE).read_text())
        maps = record.get("maps")
        return str(record["run_id"]), maps if isinstance(maps, bool) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


def shard_paths(out: Path) -> list[Path]:
    return sorted((out / SHARDS).glob("part-*.parquet"))


def read_column_table(out: Path, columns: Sequence[str]) -> pa.Table:
    """The given columns of every finished shard, one table (empty when there are none)."""
    tables = [pq.read_table(p, columns=list(columns)) for p in shard_paths(out)]
    if not tables:
        return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in columns})
    return pa.concat_tables(tables)


def done_keys(out: Path, retry_errors: bool) -> np.ndarray:
    """Sorted key ids (as 'S32') already written; with `retry_errors` error rows are not done."""
    table = read_column_table(out, ["key_id", "status"])
    ids = table.column("key_id").to_pylist()
    if retry_errors:
        ids = [k for k, s in zip(ids, table.column("status").to_pylist(), strict=True) if s == "ok"]
    return np.unique(np.array(ids, dtype="S32"))


def write_shard(
    batch: dict[str, np.ndarray],
    output_dir: str,
    run: str,
    threshold: float | None,
    limits: tuple[float | None, float | None],
) -> dict[str, np.ndarray]:
    """CPU stage: overlays for scored images with maps, then one atomic shard; returns counts."""
    out = Path(output_dir)
    kinds = list(batch["kind"])
    keep = [i for i, k in enumerate(kinds) if k in WRITTEN_KINDS]
    rows = [_table_row(batch, i, out, run, threshold, limits) for i in keep]
    counts = {name: 0 for name in COUNTS}
    counts.update(skipped=kinds.count("skipped"), excluded=kinds.count("excluded"))
    counts.update(written=len(rows), ok=sum(r["status"] == "ok" for r in rows))
    counts.update(error=len(rows) - counts["ok"])
    counts["abnormal"] = sum(r["decision"] == "abnormal" for r in rows)
    name = ""
    if rows:
        digest = hashlib.blake2b(
            "\n".join(sorted(r["key_id"] for r in rows)).encode(), digest_size=10
        )
        name = f"part-{digest.hexdigest()}.parquet"
        _atomic_parquet(pa.Table.from_pylist(rows, schema=SCHEMA), out / SHARDS / name)
    result = {k: np.array([v], dtype=np.int64) for k, v in counts.items()}
    return {**result, "shard": np.array([name], dtype=object)}


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _text(value) -> str | None:
    return None if value is None or value == "" else str(value)


def _table_row(batch, i: int, out: Path, run: str, threshold, limits) -> dict:
    status = "error" if batch["kind"][i] == "input" else str(batch["status"][i])
    score = float(batch["score"][i])
    guarded = "in_domain" in batch  # batches of a scorer that predates the guard have none
    row = {
        "path": str(batch["path"][i]),
        "status": status,
        "error": _text(batch["error"][i]),
        "score": score if status == "ok" and np.isfinite(score) else None,
        "decision": _text(batch["decision"][i]) if status == "ok" else None,
        "threshold": threshold,
        "domain_distance": _finite(batch["domain_distance"][i]) if guarded else None,
        "in_domain": {"true": True, "false": False}.get(str(batch["in_domain"][i]))
        if guarded
        else None,
        "run_id": run,
        "kind": str(batch["kind"][i]),
        "slice_scores": None,
        "overlay": _text(batch["overlay"][i]),
        "slices": _text(batch["slices"][i]),
        "key": str(batch["key"][i]),
        "key_id": str(batch["key_id"][i]),
        "scored_at": int(time.time() * 1000),
    }
    if batch["slice_scores"][i]:
        pairs = json.loads(batch["slice_scores"][i])
        row["slice_scores"] = [{"slice": int(s), "score": float(v)} for s, v in pairs]
    if status == "ok" and batch["amap"][i]:
        _overlay(batch, i, row, out, limits)
    return row


def _overlay(batch, i: int, row: dict, out: Path, limits) -> None:
    """The overlay PNG beside the original; a failure keeps the score and says why."""
    from anomed.viz.overlay import save_prediction_png

    amap = np.frombuffer(batch["amap"][i], np.float32)
    side = int(round(np.sqrt(amap.size)))
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(row["path"]).stem)
    rel = f"overlays/{row['key_id'][:16]}_{stem[:60]}_overlay.png"
    try:
        image = read_image(os.fsdecode(batch["source"][i]))
        save_prediction_png(
            out / rel,
            image,
            amap.reshape(side, side),
            score=row["score"],
            decision=row["decision"],
            threshold=row["threshold"],
            limits=limits,
            note=OUT_OF_DOMAIN if row["in_domain"] is False else None,
        )
        row["overlay"] = rel
    except (OSError, ValueError, AnomedError) as exc:
        row["error"] = f"overlay not written: {exc}"


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(temp_sibling(path))  # not mkstemp: its 0600 mode would stay on the shard
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def compact(out: Path) -> int:
    """Keep one row per input: the newest row of each path (a changed file scored again, an
    error retried) and one copy of each key. Rewrites only the shards that lose rows and
    removes the dropped rows' overlay / NIfTI files; returns how many rows were removed."""
    paths = shard_paths(out)
    seen: dict[str, tuple[int, int, int]] = {}  # path -> (scored_at, shard, row) of the newest
    drop: dict[int, set[int]] = {}
    for s, shard in enumerate(paths):
        table = pq.read_table(shard, columns=["path", "scored_at"])
        stamps = table.column("scored_at").cast(pa.int64()).to_pylist()
        for r, (path, stamp) in enumerate(
            zip(table.column("path").to_pylist(), stamps, strict=True)
        ):
            old = seen.get(path)
            if old is None or (stamp, s, r) > old:
                if old is not None:
                    drop.setdefault(old[1], set()).add(old[2])
                seen[path] = (stamp, s, r)
            else:
                drop.setdefault(s, set()).add(r)
    files: set[str] = set()
    for s, rows in drop.items():
        table = pq.read_table(paths[s])
        for column in ("overlay", "slices"):
            files |= {table.column(column)[r].as_py() for r in rows} - {None}
        keep = [r for r in range(table.num_rows) if r not in rows]
        if keep:
            _atomic_parquet(table.take(keep), paths[s])
        else:
            paths[s].unlink()
    if files:
        kept = read_column_table(out, ["overlay", "slices"])
        files -= set(kept.column("overlay").to_pylist()) | set(kept.column("slices").to_pylist())
        for rel in files:
            target = (out / rel).resolve()
            if out.resolve() in target.parents:  # only files this run folder holds
                target.unlink(missing_ok=True)
    return sum(len(r) for r in drop.values())
