"""The PACS worker's ledger: every series it has seen, how far it got, and what it created.

One SQLite file (`<data-dir>/pacs-ledger.sqlite`, WAL mode, every change one transaction), so a
worker killed at any point restarts from what it had finished:

    found -> retrieved -> scored -> sent        (or failed, with the reason)

- `scored` means the result objects are written to disk and their SOP Instance UIDs recorded
  (table `outputs`, `stored` = 0) before the first STOW; a restart stores only those the PACS
  does not already hold, so a result is never sent twice, even when the worker died between
  the PACS accepting an object and the ledger noting it;
- `outputs` also lists every series the worker created, so it never scores its own objects.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

STATES = ("found", "retrieved", "scored", "sent", "failed")
LEDGER_NAME = "pacs-ledger.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, modality TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '', n_instances INTEGER,
    state TEXT NOT NULL CHECK (state IN ('found', 'retrieved', 'scored', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, score REAL, decision TEXT,
    threshold REAL, results TEXT NOT NULL DEFAULT '[]', timings TEXT NOT NULL DEFAULT '{}',
    found REAL NOT NULL, updated REAL NOT NULL, sent REAL
);
CREATE TABLE IF NOT EXISTS outputs (
    sop_instance_uid TEXT PRIMARY KEY, source_series_uid TEXT NOT NULL REFERENCES series,
    kind TEXT NOT NULL, series_uid TEXT NOT NULL, path TEXT NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outputs_series ON outputs (series_uid);
"""
_JSON = ("results", "timings")
_FIELDS = frozenset(
    {"state", "attempts", "error", "score", "decision", "threshold", "results", "timings",
     "n_instances", "sent"}
)  # fmt: skip


class Ledger:
    """Series and created objects; safe to use from several threads of one process, and from
    several processes (SQLite's own locking)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LEDGER_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a sent mark survives a power cut
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_decode(dict(r)) for r in rows]

    def add_found(
        self, series_uid: str, study_uid: str, modality: str, description: str, n: int | None
    ) -> bool:
        """Record a new series as found; False when it is already known (any state)."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO series (series_uid, study_uid, modality, description, "
                "n_instances, state, found, updated) VALUES (?, ?, ?, ?, ?, 'found', ?, ?)",
                (series_uid, study_uid, modality, description, n, now, now),
            )
        return cur.rowcount > 0

    def update(self, series_uid: str, **fields: Any) -> None:
        unknown = set(fields) - _FIELDS
        if unknown or ("state" in fields and fields["state"] not in STATES):
            raise ValueError(f"bad ledger update {sorted(fields)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v, allow_nan=False) if k in _JSON else v for k, v in fields.items()]
        with self._lock:
            self._db.execute(
                f"UPDATE series SET {sets}, updated = ? WHERE series_uid = ?",
                (*values, time.time(), series_uid),
            )

    def series(self, series_uid: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM series WHERE series_uid = ?", (series_uid,))
        return rows[0] if rows else None

    def all(self, state: str | None = None, study_uid: str | None = None) -> list[dict]:
        where, args = [], []
        for column, value in (("state", state), ("study_uid", study_uid)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._rows(f"SELECT * FROM series {clause} ORDER BY found, series_uid", tuple(args))

    def pending(self) -> list[dict[str, Any]]:
        """Series still to finish, oldest first: found, retrieved, scored."""
        return self._rows(
            "SELECT * FROM series WHERE state IN ('found', 'retrieved', 'scored') "
            "ORDER BY found, series_uid"
        )

    def set_outputs(self, source_series_uid: str, outputs: list[dict[str, str]]) -> None:
        """Replace the not-yet-stored objects of a series by `outputs` (kind, sop_instance_uid,
        series_uid, path) and mark it scored, in one transaction."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM outputs WHERE source_series_uid = ? AND stored = 0",
                (source_series_uid,),
            )
            self._db.executemany(
                "INSERT INTO outputs (sop_instance_uid, source_series_uid, kind, series_uid, "
                "path) VALUES (?, ?, ?, ?, ?)",
                [
                    (o["sop_instance_uid"], source_series_uid, o["kind"], o["series_uid"],
                     o["path"])
                    for o in outputs
                ],
            )  # fmt: skip
            self._db.execute(
                "UPDATE series SET state = 'scored', updated = ? WHERE series_uid = ?",
                (time.time(), source_series_uid),
            )

    def outputs(self, source_series_uid: str | None = None) -> list[dict[str, Any]]:
        if source_series_uid is None:
            return self._rows("SELECT * FROM outputs ORDER BY rowid")
        return self._rows(
            "SELECT * FROM outputs WHERE source_series_uid = ? ORDER BY rowid",
            (source_series_uid,),
        )

    def mark_stored(self, sop_instance_uids: list[str]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE outputs SET stored = 1 WHERE sop_instance_uid = ?",
                [(uid,) for uid in sop_instance_uids],
            )

    def is_ours(self, series_uid: str) -> bool:
        """True for a series this worker created (a SEG, PM or SR it stored)."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM outputs WHERE series_uid = ? LIMIT 1", (series_uid,)
            ).fetchone()
        return row is not None

    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT state, COUNT(*) AS n FROM series GROUP BY state")
        return {r["state"]: r["n"] for r in rows}


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return row
