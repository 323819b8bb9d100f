"""Faults against a real Orthanc: the PACS stopped mid-run and restarted, a corrupt series, a
second watch on the same ledger, Ctrl-C between series, the worker SIGKILLed mid-series, and
credentials that never show up in logs, errors or the ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest
from pacskit import anomed_series, make_watcher

from anomed.pacs import Ledger, PacsError, RetryPolicy
from anomed.pacs.worker import stop_on_signal


def _study(paths: list[Path]) -> str:
    return pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID


def _one_result_each(server, sources, keys) -> None:
    """Every source study holds its results exactly once (MR: SEG, PM, SR; films: SEGs, SR)."""
    for key in keys:
        made = anomed_series(server, _study(sources[key]))
        n_seg = len(sources[key]) if key != "mr" else 1
        want = {"SEG": n_seg, "SR": 1} | ({"OT": 1} if key == "mr" else {})  # PM: OT
        got: dict[str, int] = {}
        for s in made:
            got[s["Modality"]] = got.get(s["Modality"], 0) + 1
            assert s["NumberOfSeriesRelatedInstances"] == 1, s
        assert got == want, key


def _consistent(data_dir: Path, n_sent: int) -> Ledger:
    ledger = Ledger(data_dir)
    rows = ledger.all()
    assert [r["state"] for r in rows].count("sent") == n_sent
    for r in rows:
        if r["state"] == "sent":
            assert all(o["stored"] for o in ledger.outputs(r["series_uid"]))
    return ledger


@pytest.mark.slow
def test_orthanc_restarted_mid_run_loses_nothing_and_sends_nothing_twice(
    detector, orthanc, sources, tmp_path
):
    orthanc.upload(sources["mr"] + sources["cr"] + sources["dx"])
    events = []

    def on_event(name, **kw):
        events.append(name)
        if name == "sent" and events.count("sent") == 1:
            orthanc.stop()  # the PACS goes away after the first series

    def on_retry(what, why, delay):
        events.append("retry")
        if orthanc.proc is None:
            orthanc.start()  # ... and comes back while the worker backs off

    watcher = make_watcher(detector, orthanc, tmp_path / "d", on_event, on_retry)
    summary = watcher.run()[0]
    assert "retry" in events and len(summary.sent) == 3 and summary.unavailable is None
    _one_result_each(orthanc, sources, ("mr", "cr", "dx"))
    ledger = _consistent(tmp_path / "d", 3)
    assert all(r["attempts"] == 0 for r in ledger.all())  # a PACS outage is no series' fault
    watcher.close()


@pytest.mark.slow
def test_a_pacs_that_stays_down_ends_the_pass_and_the_next_run_resumes(
    detector, orthanc, sources, tmp_path
):
    orthanc.upload(sources["cr"] + sources["dx"])

    def on_event(name, **kw):
        if name == "sent":
            orthanc.stop()

    watcher = make_watcher(detector, orthanc, tmp_path / "d", on_event)
    first = watcher.run()[0]
    assert len(first.sent) == 1 and first.unavailable and "connection" in first.unavailable
    states = sorted(r["state"] for r in watcher.ledger.all())
    assert states == ["found", "sent"]
    watcher.close()
    orthanc.start()
    again = make_watcher(detector, orthanc, tmp_path / "d")
    second = again.run()[0]
    assert len(second.sent) == 1 and second.sent[0] not in first.sent
    _one_result_each(orthanc, sources, ("cr", "dx"))
    again.close()


def test_a_corrupt_series_is_failed_with_its_error_and_the_others_are_sent(
    detector, orthanc, sources, tmp_path
):
    orthanc.upload(sources["corrupt"] + sources["dx"])
    watcher = make_watcher(detector, orthanc, tmp_path / "d")
    summary = watcher.run()[0]
    assert len(summary.sent) == 1 and len(summary.failed) == 1
    bad = watcher.ledger.series(summary.failed[0])
    assert bad["state"] == "failed" and bad["attempts"] == 1 and bad["error"]
    assert not anomed_series(orthanc, _study(sources["corrupt"]))
    _one_result_each(orthanc, sources, ("dx",))
    watcher.close()

    # a second watch on the same ledger: nothing new is sent, nothing retried
    again = make_watcher(detector, orthanc, tmp_path / "d")
    second = again.run()[0]
    assert (second.found, second.sent, second.failed) == (0, [], [])
    _one_result_each(orthanc, sources, ("dx",))
    again.close()


def test_ctrl_c_stops_between_series(detector, orthanc, sources, tmp_path):
    orthanc.upload(sources["cr"] + sources["dx"])
    watcher = make_watcher(detector, orthanc, tmp_path / "d")
    watcher.on_event = lambda name, **kw: (
        os.kill(os.getpid(), signal.SIGINT) if name == "sent" else None
    )
    restore = stop_on_signal(watcher.stop)
    try:
        summary = watcher.run()[0]
    finally:
        restore()
    assert len(summary.sent) == 1  # the series in hand was finished, the next not started
    assert sorted(r["state"] for r in watcher.ledger.all()) == ["found", "sent"]
    watcher.close()


_KILLED = """
import os, signal, sys
sys.path[:0] = [{tests!r}]
from pacskit import make_watcher
from orthanckit import Orthanc
from anomed.engine.detector import load_detector

server = Orthanc.__new__(Orthanc)
server.http_port, server.users = {port}, {{}}
def on_event(name, **kw):
    if name == {event!r}:
        os.kill(os.getpid(), signal.SIGKILL)
watcher = make_watcher(load_detector({run!r}, "cpu"), server, {data!r}, on_event)
watcher.run()
"""


@pytest.mark.slow
@pytest.mark.parametrize("event", ["retrieved", "scored", "stored"])
def test_a_worker_killed_mid_series_finishes_it_exactly_once_on_restart(
    event, detector, checkpoint, orthanc, sources, tmp_path
):
    orthanc.upload(sources["mr"])
    script = _KILLED.format(
        tests=str(Path(__file__).parent), port=orthanc.http_port, event=event,
        run=str(checkpoint), data=str(tmp_path / "d"),
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, timeout=600)
    assert done.returncode == -signal.SIGKILL
    ledger = Ledger(tmp_path / "d")
    [row] = ledger.all()
    assert row["state"] == {"retrieved": "retrieved", "scored": "scored", "stored": "scored"}[event]
    ledger.close()
    watcher = make_watcher(detector, orthanc, tmp_path / "d")
    assert len(watcher.run()[0].sent) == 1
    _one_result_each(orthanc, sources, ("mr",))
    _consistent(tmp_path / "d", 1).close()
    watcher.close()


def test_credentials_work_and_never_show(detector, tmp_path, sources):
    from orthanckit import Orthanc

    secret = "s3cret-Pa55"
    server = Orthanc(tmp_path / "o", users={"alice": secret}).start()
    try:
        server.upload(sources["dx"])
        lines = []
        bad = make_watcher(
            detector, server, tmp_path / "d", user=f"alice:wrong-{secret}", log=lines.append,
            retry=RetryPolicy(tries=1),
        )  # fmt: skip
        with pytest.raises(PacsError) as err:
            bad.run()
        assert "401" in str(err.value) and secret not in str(err.value)
        bad.close()
        good = make_watcher(detector, server, tmp_path / "d", log=lines.append)
        assert len(good.run()[0].sent) == 1
        good.close()
        assert not any(secret in line for line in lines)
        assert secret.encode() not in (tmp_path / "d" / "pacs-ledger.sqlite").read_bytes()
    finally:
        server.stop()


def test_filters_and_a_series_still_arriving(detector, orthanc, sources, tmp_path):
    """Modality, body part and description filters; a series is taken only once its instance
    count has held for stable_s (here: never within the test, then at once)."""
    orthanc.upload(sources["cr"] + sources["dx"])
    watcher = make_watcher(detector, orthanc, tmp_path / "d", once=False, stable_s=3600)
    assert watcher.discover() == 0 and watcher.ledger.all() == []  # first sighting: settling
    watcher.cfg.stable_s = 0
    watcher.cfg.modalities = ("DX",)
    assert watcher.discover() == 1
    assert [r["modality"] for r in watcher.ledger.all()] == ["DX"]
    watcher.cfg.modalities = ()
    watcher.cfg.description = "no such description"
    assert watcher.discover() == 0
    watcher.cfg.description, watcher.cfg.body_parts = "CHEST PHANTOM", ("HEAD",)
    assert watcher.discover() == 0  # the films carry no BodyPartExamined
    watcher.cfg.body_parts = ()
    assert watcher.discover() == 1  # the CR series, matched by its description
    watcher.close()
