import json

from anomed.cli import main


def test_bench_speed_writes_report(tmp_path, capsys):
    out = tmp_path / "speed"
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
    report = json.loads((out / "speed.json").read_text())
    timed = [r for r in report["inference"] if "img_per_s" in r]
    assert [r["batch"] for r in timed] == [1, 4] and all(r["img_per_s"] > 0 for r in timed)
    cached, fresh = report["adaptation"]  # mediclip is a side-adapter method: both settings
    assert cached["cache"] and not fresh["cache"]
    assert cached["k"] == 2 and cached["items_per_epoch"] == 2 and cached["optimizer_steps"] == 1
    assert all(r["peak_memory_mib"] > 0 for r in report["adaptation"] + timed)
    assert [r["precision"] for r in report["inference"] if "skipped" in r] == ["bf16"]
    assert "img/s" in capsys.readouterr().out


def test_bench_speed_times_a_residual_adapter_method_uncached(tmp_path):
    out = tmp_path / "speed"
    argv = ["bench", "speed", "--method", "mvfa", "--image-size", "112", "--batch-sizes", "2"]
    argv += ["--iters", "1", "--k", "1", "--epochs", "1", "--adapt-batch-size", "1", "-o", str(out)]
    assert main(argv) == 0
    (row,) = json.loads((out / "speed.json").read_text())["adaptation"]
    assert not row["cache"] and row["batch_size"] == 1 and row["optimizer_steps"] == 22


def test_bench_speed_profile_names_the_top_operators(tmp_path, capsys):
    out = tmp_path / "speed"
    argv = ["bench", "speed", "--image-size", "56", "--batch-sizes", "2", "--iters", "1"]
    argv += ["--k", "1", "--epochs", "1", "--cache", "on", "--profile", "-o", str(out)]
    assert main(argv) == 0
    profile = json.loads((out / "speed.json").read_text())["profile"]
    for part in ("inference", "adaptation_steps"):
        ops = profile[part]
        assert ops and all(o["self_ms"] >= 0 and 0 <= o["share"] <= 1 for o in ops)
    assert "aten::" in capsys.readouterr().out


def test_cpu_info_names_the_int8_relevant_flags():
    from anomed.engine.speed import CPU_FLAGS, cpu_info, cpu_line

    info = cpu_info()
    assert info["model"] and info["cores"] >= 1 and info["torch_threads"] >= 1
    assert all(any(k in f for k in CPU_FLAGS) for f in info["flags"])
    assert "sse2" not in info["flags"]  # only what decides INT8 speed
    line = cpu_line({"model": "X", "flags": [], "cores": 2, "torch_threads": 2})
    assert line == "CPU: X; flags: none of avx2/avx512/vnni/amx; 2 cores available, 2 threads"
