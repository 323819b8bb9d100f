import json

from anomed.cli import main


def test_bench_speed_writes_report(tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = [
        "bench",
        "speed",
        "--image-size",
        "112",
        "--batch-sizes",
        "1",
        "4",
        "--iters",
        "1",
        "--k",
        "2",
        "--epochs",
        "1",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    timed = [r for r in report["inference"] if "img_per_s" in r]
    assert [r["batch"] for r in timed] == [1, 4] and all(r["img_per_s"] > 0 for r in timed)
    assert report["adaptation"]["k"] == 2 and report["adaptation"]["items_per_epoch"] == 2
    assert report["peak_memory_mib"] > 0
    assert "img/s" in capsys.readouterr().out
