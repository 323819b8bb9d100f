"""The worker's parts without a server: credentials, retry delays, the ledger's states and
its never-twice bookkeeping, the config's refusals, the CLI's help."""

from __future__ import annotations

import pytest

from anomed.cli import build_parser
from anomed.errors import AnomedError
from anomed.pacs import Ledger, PacsClient, RetryPolicy, WatchConfig
from anomed.pacs.client import split_credentials
from anomed.pacs.run import credentials


def test_credentials_in_a_url_move_to_the_session_and_never_show():
    url, auth = split_credentials("http://alice:pw%21@127.0.0.1:8042/dicom-web")
    assert url == "http://127.0.0.1:8042/dicom-web" and auth == ("alice", "pw%21")
    client = PacsClient("http://alice:s3cret@127.0.0.1:9/dicom-web")
    assert "s3cret" not in repr(client) and "s3cret" not in client.url
    token = PacsClient("http://127.0.0.1:9/dicom-web", token="t0ken")
    assert "t0ken" not in repr(token)


def test_credentials_from_the_environment(monkeypatch):
    monkeypatch.setenv("ANOMED_PACS_TOKEN", "abc")
    assert credentials(None, None) == (None, "abc")
    monkeypatch.setenv("ANOMED_PACS_USER", "u:p")
    with pytest.raises(AnomedError, match="not both"):
        credentials(None, None)


def test_retry_delays_back_off_exponentially_up_to_a_cap():
    assert RetryPolicy(tries=6, base_s=0.5, max_s=4).delays() == [0.5, 1, 2, 4, 4]
    assert RetryPolicy(tries=1).delays() == []


def test_an_unreachable_server_is_unavailable_after_its_tries():
    from orthanckit import free_port

    from anomed.pacs import PacsUnavailable

    calls = []
    client = PacsClient(
        f"http://127.0.0.1:{free_port()}/dicom-web",
        retry=RetryPolicy(tries=3, base_s=0.01, max_s=0.01),
        on_retry=lambda what, why, delay: calls.append(why),
    )
    with pytest.raises(PacsUnavailable, match="after 3 tries") as err:
        client.find_series()
    assert err.value.down and calls == ["connection refused or lost"] * 2


def test_ledger_states_outputs_and_what_is_ours(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.add_found("1.2.3", "1.2", "MR", "T1", 12)
    assert not ledger.add_found("1.2.3", "1.2", "MR", "T1", 12)  # known: never found twice
    outs = [
        {"kind": k, "sop_instance_uid": f"9.{i}", "series_uid": f"8.{i}", "path": f"/x/{k}"}
        for i, k in enumerate(("seg", "pmap", "sr"))
    ]
    ledger.set_outputs("1.2.3", outs)
    assert ledger.series("1.2.3")["state"] == "scored"
    assert ledger.is_ours("8.1") and not ledger.is_ours("1.2.3")
    ledger.mark_stored(["9.0"])
    ledger.set_outputs("1.2.3", outs[1:])  # a re-score replaces only what was not stored
    assert [(o["sop_instance_uid"], o["stored"]) for o in ledger.outputs("1.2.3")] == [
        ("9.0", 1), ("9.1", 0), ("9.2", 0),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        ledger.update("1.2.3", state="done")
    ledger.update("1.2.3", state="sent")
    assert ledger.counts() == {"sent": 1} and ledger.pending() == []
    ledger.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"send": ("seg", "mesh")}, "--send"), ({"since": "2026-01-01"}, "YYYYMMDD"),
     ({"max_attempts": 0}, "attempts")],
)  # fmt: skip
def test_watch_config_refuses_bad_settings(tmp_path, kwargs, message):
    with pytest.raises(AnomedError, match=message):
        WatchConfig(data_dir=tmp_path, **kwargs)


def test_pacs_commands_have_help(capsys):
    parser = build_parser()
    for argv in (["pacs", "watch"], ["pacs", "send"], ["pacs", "status"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*argv, "--help"])
        assert exc.value.code == 0
        assert "usage: anomed pacs" in capsys.readouterr().out
