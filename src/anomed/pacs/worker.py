"""The PACS worker: find new series, retrieve, score, send the results back; repeat.

Each pass asks the PACS (QIDO-RS) for its series, keeps those that match the filters and are
neither results (SEG, SR, anything anomed made: by modality, by manufacturer, and by the
ledger's list of series it created) nor still arriving (the instance count must hold for
`stable_s`), records new ones as `found`, then finishes every pending series in order:

    found/retrieved --WADO-RS--> retrieved --score--> scored --STOW-RS--> sent

A series that fails is retried on later passes and marked `failed` with its reason after
`max_attempts` tries (at once when its data cannot be scored: retrying gives the same answer).
When the PACS cannot be reached the pass ends without counting a try against any series; a
loop waits `poll_s` and starts again. `stop` (Ctrl-C in the CLI) is honoured between series.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from anomed.engine.detector import Detector
from anomed.errors import AnomedError
from anomed.pacs.client import PacsClient, PacsError, PacsUnavailable, SeriesInfo
from anomed.pacs.ledger import Ledger
from anomed.pacs.score import save_instances, score_series

# modalities of objects that are not images to score (results, documents, plans, waveforms)
NOT_IMAGE_MODALITIES = frozenset(
    {"SEG", "SR", "KO", "PR", "RWV", "REG", "DOC", "PLAN", "RTSTRUCT", "RTPLAN", "RTDOSE",
     "RTRECORD", "RTIMAGE", "FID", "AU", "ECG", "HD", "OT-SR"}
)  # fmt: skip
SEND_KINDS = ("seg", "pmap", "sr")
Event = Callable[..., None]


@dataclass
class WatchConfig:
    """What the worker watches and sends (see the module docstring)."""

    data_dir: Path
    poll_s: float = 10.0  # seconds between passes
    since: str | None = None  # StudyDate YYYYMMDD: only studies from that day on
    modalities: tuple[str, ...] = ()  # empty: every image modality
    body_parts: tuple[str, ...] = ()  # BodyPartExamined, case-insensitive; empty: any
    description: str | None = None  # a SeriesDescription must contain this (case-insensitive)
    send: tuple[str, ...] = SEND_KINDS
    once: bool = False  # one pass, then return
    max_attempts: int = 3
    stable_s: float = 2.0  # a series' instance count must hold this long before scoring
    keep_inputs: bool = False  # keep the retrieved instances after sending (PHI on disk)
    review: bool = False  # also list results on `anomed serve --data-dir` (same folder)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        bad = set(self.send) - set(SEND_KINDS)
        if bad or not self.send:
            raise AnomedError(f"--send {' '.join(self.send)}: use one or more of seg pmap sr")
        if self.since is not None and not (len(self.since) == 8 and self.since.isdigit()):
            raise AnomedError(f"--since {self.since}: use a date YYYYMMDD, e.g. 20260101")
        if self.max_attempts < 1 or self.poll_s < 0 or self.stable_s < 0:
            raise AnomedError("max attempts must be >= 1, poll and stable times >= 0")
        self.modalities = tuple(m.upper() for m in self.modalities)


@dataclass
class PassSummary:
    found: int = 0
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unavailable: str | None = None  # why the PACS could not be reached, if it could not


class Watcher:
    """One detector, one PACS, one ledger."""

    def __init__(
        self,
        detector: Detector,
        client: PacsClient,
        cfg: WatchConfig,
        log: Callable[[str], None] = print,
        on_event: Event | None = None,
    ) -> None:
        self.detector, self.client, self.cfg, self.log = detector, client, cfg, log
        self.ledger = Ledger(cfg.data_dir)
        self.stop = client.stop
        self.on_event = on_event or (lambda *a, **k: None)
        self._seen: dict[str, tuple[int | None, float]] = {}  # uid -> (count, since when)

    def close(self) -> None:
        self.ledger.close()

    # ------------------------------------------------------------------ discovery

    def wanted(self, s: SeriesInfo) -> bool:
        """A series to score: an image modality asked for, matching the filters, not ours."""
        cfg = self.cfg
        if not s.series_uid or s.modality.upper() in NOT_IMAGE_MODALITIES:
            return False
        if s.manufacturer == "anomed" or self.ledger.is_ours(s.series_uid):
            return False
        if cfg.body_parts and s.body_part.upper() not in {b.upper() for b in cfg.body_parts}:
            return False
        if cfg.description and cfg.description.lower() not in s.description.lower():
            return False
        return True

    def discover(self) -> int:
        """One QIDO pass; stable new series are recorded as found. Returns how many."""
        listed: list[SeriesInfo] = []
        for modality in self.cfg.modalities or (None,):
            listed += self.client.find_series(modality, self.cfg.since)
        now, new = time.monotonic(), 0
        for s in filter(self.wanted, listed):
            count, since = self._seen.get(s.series_uid, (None, now))
            if count != s.n_instances:
                since = now
            self._seen[s.series_uid] = (s.n_instances, since)
            if now - since < self.cfg.stable_s or self.ledger.series(s.series_uid):
                continue
            if self.ledger.add_found(
                s.series_uid, s.study_uid, s.modality, s.description, s.n_instances
            ):
                new += 1
                self.on_event("found", series=s.series_uid)
        return new

    def _discover_stable(self) -> int:
        """discover(), and in --once mode a second look after `stable_s` for series that were
        still settling."""
        new = self.discover()
        unsettled = any(not self.ledger.series(uid) for uid in self._seen)
        if self.cfg.once and self.cfg.stable_s > 0 and unsettled and not self.stop.is_set():
            self.stop.wait(self.cfg.stable_s)
            new += self.discover()
        return new

    # ------------------------------------------------------------------ one series

    def _work(self, series_uid: str) -> Path:
        return self.cfg.data_dir / "series" / series_uid.replace("/", "_")

    def _retrieve(self, row: dict) -> float:
        t0 = time.perf_counter()
        datasets = self.client.retrieve_series(row["study_uid"], row["series_uid"])
        expected = row["n_instances"]
        if not datasets or (expected and len(datasets) < expected):
            raise PacsError(
                f"series {row['series_uid']}: retrieved {len(datasets)} of {expected} instances"
            )
        save_instances(datasets, self._work(row["series_uid"]) / "input")
        self.ledger.update(row["series_uid"], state="retrieved")
        self.on_event("retrieved", series=row["series_uid"])
        return time.perf_counter() - t0

    def _score(self, row: dict) -> float:
        t0 = time.perf_counter()
        work = self._work(row["series_uid"])
        try:
            result = score_series(self.detector, work / "input", work / "out", self.cfg.send)
        except AnomedError as exc:
            raise _Unscorable(str(exc)) from None
        outputs = []
        for kind, path in result.objects():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            outputs.append(
                {"kind": kind, "sop_instance_uid": ds.SOPInstanceUID,
                 "series_uid": ds.SeriesInstanceUID, "path": str(path)}
            )  # fmt: skip
        results = [
            {"source": str(i.source.relative_to(work)), "score": i.score, "decision": i.decision,
             "note": i.note, "review": self._review(row, i)}
            for i in result.items
        ]  # fmt: skip
        self.ledger.update(
            row["series_uid"], score=result.score, decision=_series_decision(result.items),
            threshold=self.detector.threshold, results=results,
        )  # fmt: skip
        self.ledger.set_outputs(row["series_uid"], outputs)
        self.on_event("scored", series=row["series_uid"])
        return time.perf_counter() - t0

    def _review(self, row: dict, item) -> str | None:
        """The review worklist's study id for one scored input (with --review), else None.
        A failure here is logged, never the series' failure: the PACS results stand."""
        if not self.cfg.review or item.volume is None:
            return None
        from anomed.pacs.review import add_review_study

        try:
            return add_review_study(self.cfg.data_dir, self.detector, row, item.source, item.volume)
        except (AnomedError, OSError, ValueError, sqlite3.Error) as exc:
            self.log(f"series {row['series_uid']}: not listed for review: {exc}")
            return None

    def _send(self, row: dict) -> float:
        """Store what the PACS does not hold yet (a restart after a partial send)."""
        t0 = time.perf_counter()
        pending = [o for o in self.ledger.outputs(row["series_uid"]) if not o["stored"]]
        for out_series in sorted({o["series_uid"] for o in pending}):
            held = set(self.client.instance_uids(row["study_uid"], out_series))
            group = [o for o in pending if o["series_uid"] == out_series]
            missing = [o for o in group if o["sop_instance_uid"] not in held]
            if missing:
                self.client.store([pydicom.dcmread(o["path"]) for o in missing], row["study_uid"])
                self.on_event("stored", series=row["series_uid"], n=len(missing))
            self.ledger.mark_stored([o["sop_instance_uid"] for o in group])
        self.ledger.update(row["series_uid"], state="sent", sent=time.time(), error=None)
        if not self.cfg.keep_inputs:
            shutil.rmtree(self._work(row["series_uid"]) / "input", ignore_errors=True)
        self.on_event("sent", series=row["series_uid"])
        return time.perf_counter() - t0

    def process(self, row: dict) -> str:
        """Take one pending series as far as it goes; returns its new state. PacsUnavailable
        (the server is down) passes through with nothing counted against the series."""
        uid, timings = row["series_uid"], dict(row["timings"])
        try:
            if row["state"] in ("found", "retrieved"):
                timings["retrieve_s"] = self._retrieve(row)
                timings["score_s"] = self._score(row)
            timings["store_s"] = self._send(row)
            timings["found_to_sent_s"] = time.time() - row["found"]
            self.ledger.update(uid, timings=timings)
            return "sent"
        except PacsUnavailable as exc:
            if exc.down:
                raise
            return self._failed_try(row, str(exc), final=False)
        except _Unscorable as exc:
            return self._failed_try(row, str(exc), final=True)
        except AnomedError as exc:
            return self._failed_try(row, str(exc), final=False)
        except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OSError) as exc:
            return self._failed_try(row, f"{type(exc).__name__}: {exc}", final=False)

    def _failed_try(self, row: dict, error: str, final: bool) -> str:
        attempts = row["attempts"] + 1
        failed = final or attempts >= self.cfg.max_attempts
        fields: dict[str, Any] = {"attempts": attempts, "error": error}
        if failed:
            fields["state"] = "failed"
        self.ledger.update(row["series_uid"], **fields)
        self.log(f"series {row['series_uid']}: {'failed' if failed else 'will retry'}: {error}")
        self.on_event("failed" if failed else "error", series=row["series_uid"], error=error)
        return "failed" if failed else row["state"]

    # ------------------------------------------------------------------ passes

    def run_pass(self) -> PassSummary:
        """Discover, then finish every pending series (until stopped or the PACS is gone)."""
        summary = PassSummary()
        try:
            summary.found = self._discover_stable()
            for row in self.ledger.pending():
                if self.stop.is_set():
                    break
                state = self.process(row)
                getattr(summary, state, []).append(row["series_uid"])
                if state == "sent":
                    self.log(f"series {row['series_uid']}: sent")
        except PacsUnavailable as exc:
            summary.unavailable = str(exc)
            self.log(f"PACS unavailable: {exc}")
        return summary

    def run(self) -> list[PassSummary]:
        """Passes until stopped (one with `once`)."""
        passes = []
        while not self.stop.is_set():
            passes.append(self.run_pass())
            if self.cfg.once:
                break
            self.stop.wait(self.cfg.poll_s)
        return passes

    def send_study(self, study_uid: str) -> PassSummary:
        """Score and send the series of one study now (ignoring `since` and stability)."""
        summary = PassSummary()
        for s in filter(self.wanted, self.client.find_series(None, None)):
            if s.study_uid == study_uid and self.ledger.add_found(
                s.series_uid, s.study_uid, s.modality, s.description, s.n_instances
            ):
                summary.found += 1
        for row in self.ledger.all(study_uid=study_uid):
            if row["state"] in ("found", "retrieved", "scored") and not self.stop.is_set():
                state = self.process(row)
                getattr(summary, state, []).append(row["series_uid"])
        return summary


class _Unscorable(AnomedError):
    """The series' data cannot be scored: retrying gives the same answer."""


def _series_decision(items: list) -> str | None:
    decisions = [i.decision for i in items]
    if any(d is None for d in decisions):
        return None
    return "abnormal" if "abnormal" in decisions else "normal"


def stop_on_signal(stop: threading.Event) -> Callable[[], None]:
    """Ctrl-C (SIGINT) or SIGTERM sets `stop`: the worker finishes the series in hand; a
    second one interrupts. Returns a function that puts the previous handlers back."""
    import signal

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for s in signals:
        signal.signal(s, handler)
    return lambda: [signal.signal(s, h) for s, h in previous.items()] and None
