"""What to score: paths and manifests expanded into input rows, each with a resume key.

A given path is expanded exactly as the local engine does (`collect_inputs`: folders
recursive, DICOM series folders, masks and hidden files left out). A CSV or Parquet file is a
manifest: its path column lists the inputs (relative paths are taken from the manifest's
folder). Every row carries a key, `absolute path | size | mtime`, so a rerun skips what is
already written and a file changed since is scored again.

Paths travel as raw bytes (`source`), so file names that are not UTF-8 still open in the
workers; `path` is the printable form written to the tables.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomed.engine.predict import collect_inputs, display_path
from anomed.errors import AnomedError

MANIFEST_SUFFIXES = (".csv", ".parquet")
# Row kinds. Scored: image, volume; "input" = an input that could not even be listed (missing
# file, unsupported type): an error row. Counted only, never written: skipped, excluded.
WRITTEN_KINDS = ("image", "volume", "input")
COLUMNS = ("source", "path", "kind", "key", "key_id", "error")


@dataclass(frozen=True)
class Manifest:
    """A CSV/Parquet file whose `column` lists input paths."""

    path: Path
    column: str

    @property
    def base(self) -> str:
        return str(self.path.parent.absolute())


def is_manifest(path: str | Path) -> bool:
    return str(path).lower().endswith(MANIFEST_SUFFIXES)


def split_inputs(inputs: Sequence[str | Path], column: str) -> tuple[list[str], list[Manifest]]:
    """Plain inputs and manifests; a manifest must exist and hold `column` (else AnomedError)."""
    plain, manifests = [], []
    for item in inputs:
        if not is_manifest(item):
            plain.append(str(item))
            continue
        path = Path(item)
        if not path.is_file():
            raise AnomedError(f"{item}: no such manifest file. Fix: check the path.")
        names = manifest_columns(path)
        if column not in names:
            raise AnomedError(
                f"{item}: manifest has no column {column!r} (columns: {', '.join(names)}). "
                f"Fix: pass --path-column NAME."
            )
        manifests.append(Manifest(path, column))
    return plain, manifests


def manifest_columns(path: Path) -> list[str]:
    """Column names of a CSV (its header line) or Parquet file (its schema)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with open(path, newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AnomedError(f"{path}: unreadable manifest ({exc}).") from exc


def input_key(path: Path) -> str:
    """`absolute path|size|mtime_ns`; a DICOM folder sums its files' sizes and takes the latest
    change; a missing path is `...|missing`."""
    absolute = os.path.abspath(path)
    try:
        if os.path.isdir(absolute):
            stats = [e.stat() for e in os.scandir(absolute) if e.is_file()]
            size = sum(s.st_size for s in stats)
            mtime = max((s.st_mtime_ns for s in stats), default=0)
        else:
            st = os.stat(absolute)
            size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        return f"{display_path(absolute)}|missing"
    return f"{display_path(absolute)}|{size}|{mtime}"


def key_id(key: str) -> str:
    """A 128-bit hex digest of a key: shard names, overlay names and the skip filter use it."""
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _row(path: Path, kind: str, error: str = "") -> dict:
    key = input_key(path)
    return {
        "source": os.fsencode(os.path.abspath(path)),
        "path": display_path(os.path.abspath(path)),
        "kind": kind,
        "key": key,
        "key_id": key_id(key),
        "error": error,
    }


def expand(item: str, base: str = "") -> Iterator[dict]:
    """The input rows of one given path (a file, a folder, a volume) as `collect_inputs` finds
    them; relative paths are resolved against `base` (a manifest's folder)."""
    path = Path(item) if not base or os.path.isabs(item) else Path(base) / item
    files, volumes, problems, excluded = collect_inputs([path])
    for f in files:
        yield _row(f, "image")
    for v in volumes:
        yield _row(v, "volume")
    for p, why in problems:
        yield _row(Path(p), "input", why)
    for p, _ in excluded:
        yield _row(Path(p), "excluded")


def expand_batch(
    batch: dict[str, np.ndarray], done: np.ndarray | None = None, base: str = ""
) -> dict[str, np.ndarray]:
    """Ray stage: a batch of given inputs (column `input`) -> input rows. Rows whose key_id is
    in `done` (sorted 'S32' hex digests of finished rows) become kind "skipped"."""
    items = [str(i) for i in batch["input"] if i is not None and str(i).strip()]
    rows = [row for item in items for row in expand(item, base)]
    if done is not None and len(done) and rows:
        ids = np.array([r["key_id"] for r in rows], dtype="S32")
        for row, seen in zip(rows, np.isin(ids, done), strict=True):
            if seen and row["kind"] in WRITTEN_KINDS:
                row["kind"] = "skipped"
    return to_columns(rows, COLUMNS)


def to_columns(rows: list[dict], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Row dicts -> a numpy batch (object columns), empty columns when there are no rows."""
    out = {}
    for name in columns:
        col = np.empty(len(rows), dtype=object)
        col[:] = [r[name] for r in rows]
        out[name] = col
    return out
