"""What `anomed pacs watch / send / status` call: load once, run, report.

Credentials come from the flags or the environment (ANOMED_PACS_USER as `user:password`,
ANOMED_PACS_TOKEN); they go to the HTTP session only and are never printed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from anomed.errors import AnomedError
from anomed.pacs.client import PacsClient, RetryPolicy
from anomed.pacs.ledger import LEDGER_NAME, Ledger
from anomed.pacs.worker import PassSummary, WatchConfig, Watcher, stop_on_signal

USER_ENV, TOKEN_ENV = "ANOMED_PACS_USER", "ANOMED_PACS_TOKEN"


def credentials(user: str | None, token: str | None) -> tuple[str | None, str | None]:
    """The flags, else the environment (an empty variable counts as unset)."""
    user = user if user is not None else (os.environ.get(USER_ENV) or None)
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    if user and token:
        raise AnomedError("give --user or --token, not both (check ANOMED_PACS_USER/_TOKEN)")
    return user, token


def open_watcher(
    run: str | Path,
    url: str,
    cfg: WatchConfig,
    user: str | None = None,
    token: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
    retries: int = 6,
) -> Watcher:
    """A Watcher on `url` with the run's detector loaded (once) on `device`."""
    from anomed.engine.detector import load_detector

    user, token = credentials(user, token)
    stop = threading.Event()
    retried = lambda what, why, delay: log(f"{what}: {why}; retrying in {delay:.1f} s")  # noqa: E731
    if retries < 1:
        raise AnomedError(f"--retries {retries}: must be at least 1")
    client = PacsClient(
        url, user=user, token=token, stop=stop, on_retry=retried, retry=RetryPolicy(tries=retries)
    )
    detector = load_detector(run, device)
    return Watcher(detector, client, cfg, log=log)


def watch(watcher: Watcher) -> list[PassSummary]:
    """Run the loop with Ctrl-C bound to a clean stop (between series)."""
    restore = stop_on_signal(watcher.stop)
    try:
        return watcher.run()
    finally:
        restore()
        watcher.close()


def summary_line(passes: list[PassSummary], ledger_dir: Path) -> str:
    sent = sum(len(p.sent) for p in passes)
    failed = sum(len(p.failed) for p in passes)
    found = sum(p.found for p in passes)
    return (
        f"{found} new series found, {sent} sent, {failed} failed; ledger "
        f"{Path(ledger_dir) / LEDGER_NAME} (anomed pacs status --data-dir {ledger_dir})"
    )


def status_table(data_dir: str | Path, state: str | None = None) -> str:
    """The ledger as a plain-text table, one series a row, oldest first."""
    path = Path(data_dir) / LEDGER_NAME
    if not path.is_file():
        raise AnomedError(f"{path}: no PACS ledger here. Fix: pass the --data-dir of the watch.")
    ledger = Ledger(data_dir)
    try:
        rows = ledger.all(state=state)
        sent = {r["series_uid"]: len(ledger.outputs(r["series_uid"])) for r in rows}
        counts = ledger.counts()
    finally:
        ledger.close()
    header = ["series", "modality", "state", "tries", "score", "decision", "objects", "error"]
    table = [header] + [
        [
            r["series_uid"], r["modality"], r["state"], str(r["attempts"]),
            "" if r["score"] is None else f"{r['score']:.4f}", r["decision"] or "",
            str(sent[r["series_uid"]]), (r["error"] or "")[:80],
        ]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in table]  # fmt: skip
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no series yet")
    return "\n".join(lines)
