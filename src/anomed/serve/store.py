"""The service's memory: studies, their results, reviewers' verdicts and upload jobs in SQLite.

One database file in `--data-dir` in WAL mode (readers never wait for the writer, and a crash
loses at most the last transaction), so verdicts survive restarts. All access goes through one
connection guarded by a lock: writes are small and few, the forward pass is the slow part.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

VERDICTS = ("agree", "disagree", "unsure")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY, created REAL NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    kind TEXT NOT NULL, file_kind TEXT NOT NULL, status TEXT NOT NULL, score REAL,
    threshold REAL, decision TEXT, error TEXT, n_slices INTEGER, max_slice INTEGER,
    slice_scores TEXT, map_min REAL, map_max REAL, width INTEGER, height INTEGER,
    files TEXT NOT NULL, job_id TEXT, sha256 TEXT NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    study_id TEXT PRIMARY KEY REFERENCES studies(id), verdict TEXT NOT NULL
        CHECK (verdict IN ('agree', 'disagree', 'unsure')),
    note TEXT NOT NULL DEFAULT '', updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    studies TEXT NOT NULL DEFAULT '[]', errors TEXT NOT NULL DEFAULT '[]', finished REAL
);
"""
_JOB_FIELDS = frozenset({"status", "done", "failed", "studies", "errors", "finished"})
_JSON_COLUMNS = ("slice_scores", "files", "studies", "errors")
_STUDY_COLUMNS = (
    "id, created, name, model, kind, file_kind, status, score, threshold, decision, error, "
    "n_slices, max_slice, slice_scores, map_min, map_max, width, height, files, job_id, sha256, "
    "size"
)


class Store:
    """Studies, verdicts and jobs; every method is safe to call from any thread."""

    def __init__(self, path: str | Path, recover_jobs: bool = True) -> None:
        """`recover_jobs` marks jobs left running as interrupted (the service, at start); a
        second writer (`anomed pacs watch --review`) passes False."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            # a job cut short by a stop stays visible, with what it finished
            if not recover_jobs:
                return
            self._db.execute(
                "UPDATE jobs SET status = 'interrupted', finished = ? "
                "WHERE status IN ('queued', 'running')",
                (time.time(),),
            )

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_decode(dict(row)) for row in rows]

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # ------------------------------------------------------------------ studies

    def add_study(self, record: dict[str, Any]) -> None:
        names = [c.strip() for c in _STUDY_COLUMNS.split(",")]
        values = tuple(_encode(k, record.get(k)) for k in names)
        self._write(
            f"INSERT INTO studies ({_STUDY_COLUMNS}) VALUES ({', '.join('?' * len(names))})",
            values,
        )

    def study(self, study_id: str) -> dict[str, Any] | None:
        rows = self.studies(study_id=study_id)
        return rows[0] if rows else None

    def studies(
        self,
        model: str | None = None,
        decision: str | None = None,
        reviewed: bool | None = None,
        study_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Studies with their verdicts, highest score first (errors last)."""
        where, args = [], []
        for column, value in (("s.model", model), ("s.decision", decision), ("s.id", study_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if reviewed is not None:
            where.append("v.study_id IS NOT NULL" if reviewed else "v.study_id IS NULL")
        sql = (
            f"SELECT s.*, v.verdict, v.note, v.updated AS reviewed_at FROM studies s "
            f"LEFT JOIN verdicts v ON v.study_id = s.id "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY s.score IS NULL, s.score DESC, s.created"
        )
        return self._rows(sql, tuple(args))

    def set_verdict(self, study_id: str, verdict: str, note: str) -> bool:
        """Record (or replace) a study's verdict; False when the study does not exist."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
        if self.study(study_id) is None:
            return False
        self._write(
            "INSERT INTO verdicts (study_id, verdict, note, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(study_id) DO UPDATE SET verdict = excluded.verdict, "
            "note = excluded.note, updated = excluded.updated",
            (study_id, verdict, note, time.time()),
        )
        return True

    def clear_verdict(self, study_id: str) -> bool:
        return self._write("DELETE FROM verdicts WHERE study_id = ?", (study_id,)) > 0

    # ------------------------------------------------------------------ jobs

    def add_job(self, job_id: str, model: str, total: int) -> None:
        self._write(
            "INSERT INTO jobs (id, created, model, status, total) VALUES (?, ?, ?, 'queued', ?)",
            (job_id, time.time(), model, total),
        )

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job (status, done, failed, studies, errors, finished)."""
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        values = tuple(_encode(name, value) for name, value in fields.items())
        self._write(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None


def _encode(name: str, value: Any) -> Any:
    return json.dumps(value, allow_nan=False) if name in _JSON_COLUMNS else value


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON_COLUMNS:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row
