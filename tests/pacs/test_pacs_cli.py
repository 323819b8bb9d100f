"""`anomed pacs watch --once`, `send --study` and `status` against a real Orthanc."""

from __future__ import annotations

import pydicom
from pacskit import anomed_series

from anomed.cli import main


def _watch(checkpoint, orthanc, data, *extra):
    args = ["-q", "pacs", "watch", str(checkpoint), "--url", orthanc.dicomweb, "--once"]
    return main([*args, "--data-dir", str(data), "--stable-s", "0", "--device", "cpu", *extra])


def test_watch_once_then_status_then_send_sends_nothing_twice(
    checkpoint, orthanc, sources, tmp_path, capsys
):
    orthanc.upload(sources["dx"] + sources["cr"])
    assert _watch(checkpoint, orthanc, tmp_path / "d", "--modality", "DX", "--send", "sr") == 0
    out = capsys.readouterr().out
    assert "1 new series found, 1 sent, 0 failed" in out
    study = pydicom.dcmread(sources["dx"][0], stop_before_pixels=True).StudyInstanceUID
    assert [s["Modality"] for s in anomed_series(orthanc, study)] == ["SR"]  # --send sr only

    assert main(["pacs", "status", "--data-dir", str(tmp_path / "d")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["series", "modality", "state"]
    assert table[1].split()[1:3] == ["DX", "sent"] and table[-1] == "1 sent"

    # the CR study, by name, now; then the DX study again: nothing new
    cr = pydicom.dcmread(sources["cr"][0], stop_before_pixels=True).StudyInstanceUID
    base = ["-q", "pacs", "send", str(checkpoint), "--url", orthanc.dicomweb, "--device", "cpu"]
    assert main([*base, "--study", cr, "--data-dir", str(tmp_path / "d")]) == 0
    assert "1 new series found, 1 sent" in capsys.readouterr().out
    assert main([*base, "--study", study, "--data-dir", str(tmp_path / "d")]) == 0
    assert "0 new series found, 0 sent" in capsys.readouterr().out
    assert len(anomed_series(orthanc, study)) == 1


def test_an_unreachable_pacs_is_one_line_and_exit_1(checkpoint, tmp_path, capsys):
    from orthanckit import free_port

    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    args = ["-q", "pacs", "watch", str(checkpoint), "--url", url, "--once", "--retries", "2"]
    code = main([*args, "--data-dir", str(tmp_path / "d"), "--stable-s", "0"])
    assert code == 1
    assert "PACS unavailable" in capsys.readouterr().out


def test_status_without_a_ledger_says_where_to_look(tmp_path, capsys):
    assert main(["pacs", "status", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no PACS ledger here" in err and "Fix:" in err
