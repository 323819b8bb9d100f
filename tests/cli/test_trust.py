"""Results a user can trust on their own data (issue 13): one test per defect, and the friction
fixes. Each of these failed before the fix."""

import argparse
import json
import math

import cv2
import numpy as np
import pytest

from anomed.cli import build_parser, main
from anomed.data.layouts import LAYOUTS
from anomed.methods.base import METHODS, AnomalyMethod


def _train(data, out, *extra, method="memorybank", k="2"):
    argv = ["-q", "train", "--method", method, "--data", str(data), "--k", k]
    return main([*argv, "--image-size", "64", "-o", str(out), *extra])


def _strict_json(path):
    """json.loads that refuses NaN/Infinity tokens (what a strict JSON reader does)."""

    def refuse(token):
        raise ValueError(f"{path}: non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


# 1. k that takes the whole pool ----------------------------------------------------------
def test_k_taking_the_whole_pool_refuses_before_training(phantom_root, tmp_path, capsys):
    assert _train(phantom_root, tmp_path / "r", k="12") == 2  # the pool holds 12 normals
    err = capsys.readouterr().err
    assert "no validation images are left" in err and "smaller --k" in err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_uncalibrated_opt_in_gives_no_decisions_and_strict_json(phantom_root, tmp_path, checkpoint):
    out = tmp_path / "r"
    assert _train(phantom_root, out, "--set", "train.allow_uncalibrated=true", k="12") == 0
    assert main(["-q", "eval", str(out), "-o", str(tmp_path / "e")]) == 0
    metrics = _strict_json(tmp_path / "e" / "metrics.json")
    assert metrics["threshold"] is None and metrics["acc_calibrated"] is None
    assert "No calibrated threshold" in (tmp_path / "e" / "metrics.md").read_text()
    image = next((phantom_root / "test" / "abnormal").iterdir())
    assert main(["-q", "predict", str(out), str(image), "-o", str(tmp_path / "p")]) == 0
    row = _strict_json(tmp_path / "p" / "predictions.json")["predictions"][0]
    assert row["status"] == "ok" and row["decision"] is None and row["threshold"] is None


# 2. bench resumes cells trained under other settings -------------------------------------
def test_bench_retrains_cells_whose_settings_changed(phantom_root, tmp_path, capsys):
    from anomed.engine.bench import BenchConfig, run_bench

    def cfg(size):
        return BenchConfig(
            methods=["memorybank"],
            datasets={"p": str(phantom_root)},
            ks=[2],
            seeds=[0],
            image_size=size,
            output=str(tmp_path / "b"),
        )

    logs: list[str] = []
    run_bench(cfg(64), progress=False, log=logs.append)
    run_bench(cfg(96), progress=False, log=logs.append)
    assert any("1 trained under other settings: retrained" in line for line in logs)
    row = (tmp_path / "b" / "results.csv").read_text().splitlines()
    assert len(row) == 2 and ",96," in row[1]  # the cell now holds the 96 px model
    logs.clear()
    run_bench(cfg(96), progress=False, log=logs.append)
    assert "1 already done with these settings, 0 to run" in logs[0] and len(logs) == 1


# 3. abnormal test images moved into training, said everywhere -------------------------------
@pytest.mark.slow  # a few seconds: full protocol runs
def test_bench_states_moved_abnormal_shots_and_test_sizes(tmp_path):
    from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
    from anomed.engine.bench import BenchConfig, run_bench
    from anomed.viz.report import write_report

    data = tmp_path / "p"
    write_phantom_dataset(
        data, PhantomConfig(n_train=8, n_test_normal=4, n_test_abnormal=6, image_size=64)
    )
    cfg = BenchConfig(
        methods=["memorybank", "mvfa"],
        datasets={"p": str(data)},
        ks=[1],
        seeds=[0],
        epochs=1,
        image_size=64,
        output=str(tmp_path / "b"),
    )
    run_bench(cfg, progress=False, log=lambda _: None)
    import csv

    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "b" / "results.csv"))}
    assert rows["memorybank"]["protocol"] == "standard" and rows["memorybank"]["n_test"] == "10"
    assert rows["mvfa"]["protocol"] == "abnormal shots moved from test"
    assert int(rows["mvfa"]["n_test"]) < 10
    write_report(tmp_path / "b")
    tables = (tmp_path / "b" / "tables.md").read_text()
    assert "abnormal shots moved from test" in tables and "n_test" in tables
    assert "abnormal shots moved from test" in (tmp_path / "b" / "report.html").read_text()


def test_bench_run_help_names_the_protocol_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "run", "--help"])
    assert "--abnormal-from-test" in capsys.readouterr().out


# 4. `anomed methods` with a method class without a docstring ------------------------------
def test_methods_lists_a_class_without_docstring(monkeypatch, capsys):
    class Bare(AnomalyMethod):
        pass

    monkeypatch.setitem(METHODS._items, "bare", Bare)
    assert main(["methods"]) == 0
    assert "bare" in capsys.readouterr().out


# 5. outputs never overwritten or mixed ------------------------------------------------------
def test_train_refuses_a_used_run_folder_and_overwrite_replaces_it_whole(
    phantom_root, tmp_path, capsys
):
    out = tmp_path / "run"
    assert _train(phantom_root, out) == 0
    assert main(["-q", "eval", str(out)]) == 0
    assert (out / "eval").is_dir()
    assert _train(phantom_root, out) == 2
    assert "folder is not empty" in capsys.readouterr().err
    assert _train(phantom_root, out, "--overwrite") == 0
    assert not (out / "eval").exists()  # the old model's reports went with it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]  # no leftovers


def test_default_output_names_do_not_collide(phantom_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train(phantom_root, "", k="2") == 2  # -o '' is refused, not the current folder
    argv = ["-q", "train", "--method", "memorybank", "--data", str(phantom_root)]
    assert main([*argv, "--k", "2", "--image-size", "64"]) == 0
    assert main([*argv, "--k", "3", "--image-size", "64"]) == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["memorybank-phantom-k2-s0", "memorybank-phantom-k3-s0"]


def test_second_predict_into_a_folder_needs_overwrite_and_leaves_nothing_stale(
    checkpoint, phantom_root, tmp_path, capsys
):
    images = sorted((phantom_root / "test" / "abnormal").iterdir())
    out = tmp_path / "p"
    assert main(["-q", "predict", str(checkpoint), *map(str, images), "-o", str(out)]) == 0
    assert len(list((out / "overlays").iterdir())) == len(images)
    assert main(["-q", "predict", str(checkpoint), str(images[0]), "-o", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    argv = ["-q", "predict", str(checkpoint), str(images[0]), "-o", str(out), "--overwrite"]
    assert main(argv) == 0
    assert len(list((out / "overlays").iterdir())) == 1


# 6. predict on a raw dataset folder leaves the masks out ----------------------------------------
def test_predict_on_a_dataset_folder_skips_mask_files(checkpoint, tmp_path):
    folder = tmp_path / "ds"
    (folder / "images").mkdir(parents=True)
    (folder / "mask").mkdir()
    image = (np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "images" / "a.png"), image)
    cv2.imwrite(str(folder / "images" / "a_mask.png"), image)
    cv2.imwrite(str(folder / "mask" / "a.png"), image)
    assert main(["-q", "predict", str(checkpoint), str(folder), "-o", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert [p["file"].rsplit("/", 1)[-1] for p in report["predictions"]] == ["a.png"]
    assert len(report["excluded"]) == 2


# 7 + 9. k reported as the normal shots; 0.5 decisions only for probability scores -------------
def test_supervised_run_reports_k_and_abnormal_shots_apart(tmp_path):
    from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms

    cfg = BmadPhantomConfig(organs=("liver",), n_valid=(4, 4), n_test=(3, 3), size=64)
    (folder,) = write_bmad_phantoms(tmp_path / "b", cfg)
    out = tmp_path / "r"
    argv = ["--method", "mvfa", "--epochs", "1", "--set", "data.n_val=1", "--eval"]
    assert _train(folder, out, *argv[2:], method="mvfa") == 0
    metrics = json.loads(next((out / "eval").glob("*/metrics.json")).read_text())
    assert metrics["k"] == 2 and metrics["k_abnormal"] == 2
    assert "acc_0.5" not in metrics  # MVFA's fused scores are not probabilities
    text = next((out / "eval").glob("*/metrics.md")).read_text()
    assert "at 0.5" not in text


def test_test_set_normalised_scores_get_no_calibrated_decisions(tmp_path):
    """MVFA's reference preset min-maxes the scores over the test set; the threshold came
    from validation's min-max, so its decisions on the test set were on another scale."""
    from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms

    cfg = BmadPhantomConfig(organs=("liver",), n_valid=(4, 4), n_test=(3, 3), size=64)
    (folder,) = write_bmad_phantoms(tmp_path / "b", cfg)
    out = tmp_path / "r"
    argv = ["--epochs", "1", "--set", "data.n_val=1", "--preset", "reference", "--eval"]
    assert _train(folder, out, *argv, method="mvfa") == 0
    report = next((out / "eval").glob("*"))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["scores_relative_to_test_set"] and metrics["threshold"] is not None
    assert metrics["acc_calibrated"] is None and metrics["f1_calibrated"] is None
    assert "does not apply" in (report / "metrics.md").read_text()
    rows = (report / "scores.csv").read_text().splitlines()[1:]
    assert rows and all(row.endswith(",") for row in rows)  # no decision column values


def test_probability_methods_keep_the_papers_rule(checkpoint, tmp_path):
    assert main(["-q", "eval", str(checkpoint), "-o", str(tmp_path / "e")]) == 0
    assert "acc_0.5" in json.loads((tmp_path / "e" / "metrics.json").read_text())


# 10. layout names agree ---------------------------------------------------------------------
def test_layout_names_agree_between_help_writers_and_readers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    for name in LAYOUTS.names():
        assert name in help_text
    from anomed.data.phantoms.chest import LAYOUTS as CHEST_LAYOUTS

    assert set(CHEST_LAYOUTS) - {"folder"} <= set(LAYOUTS.names())


def test_forced_wrong_layout_names_the_one_found(tmp_path, capsys):
    from anomed.data.phantoms.chest import ChestPhantomConfig, write_chest_phantoms

    data = tmp_path / "c"
    cfg = ChestPhantomConfig(4, n_test_normal=2, n_test_abnormal=2, size=64, layout="data-json")
    write_chest_phantoms(data, cfg)
    assert _train(data, tmp_path / "r", "--layout", "folder") == 2
    assert "looks like the 'data-json' layout" in capsys.readouterr().err
    assert _train(data, tmp_path / "r", "--layout", "data-json") == 0


# 11. presentation ----------------------------------------------------------------------------
def test_heatmap_cells_label_truth_and_decision_apart():
    from anomed.viz.overlay import _cell_title

    title = _cell_title(0.9, 1, "normal", "case_01.png")
    assert "case_01.png" in title and "model: normal" in title and "truth: abnormal" in title


def test_single_seed_bars_have_no_whiskers():
    from anomed.viz.report import _bar_panel

    calls = []

    class Axes:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, k)) if name == "bar" else None

    rows = [{"method": "m", "dataset": "d", "k": 2, "seed": 0, "image_auroc": 0.7}]
    _bar_panel(Axes(), rows, "d", "image_auroc")
    assert calls and calls[0][1]["yerr"] is None


def test_report_cites_only_methods_that_ran():
    from anomed.viz.report import _citations

    cites = _citations([{"method": "mvfa"}])
    assert len(cites) == 1 and "Huang" in cites[0]


def test_predict_overlay_shows_original_heatmap_and_colour_bar(checkpoint, phantom_root, tmp_path):
    image = next((phantom_root / "test" / "abnormal").iterdir())
    assert main(["-q", "predict", str(checkpoint), str(image), "-o", str(tmp_path / "p")]) == 0
    overlay = cv2.imread(str(next((tmp_path / "p" / "overlays").iterdir())))
    source = cv2.imread(str(image))
    assert overlay.shape[1] > 2 * source.shape[1] and overlay.shape[0] > source.shape[0]


# friction ------------------------------------------------------------------------------------
def test_train_prints_a_dataset_summary_and_class_name_sets_the_organ_word(
    phantom_root, tmp_path, capsys
):
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--method",
                "memorybank",
                "--data",
                str(phantom_root),
                "--k",
                "2",
                "--image-size",
                "64",
                "-o",
                str(out),
                "--class-name",
                "brain",
                "-q",
            ]
        )
        == 0
    )  # -q after the subcommand
    err_out = capsys.readouterr()
    printed = err_out.out + err_out.err
    assert "pool 12 normal; test 3 normal + 3 abnormal" in printed
    assert "organ word 'brain'" in printed
    assert "class_name: brain" in (out / "config.yaml").read_text()


def test_raw_layouts_import_with_one_command_and_train(tmp_path, capsys):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    for cls in ("normal", "benign"):
        (raw / cls).mkdir(parents=True)
        for i in range(1, 7):
            cv2.imwrite(
                str(raw / cls / f"{cls} ({i}).png"), (rng.random((48, 48)) * 255).astype(np.uint8)
            )
            mask = np.zeros((48, 48), np.uint8)
            mask[5:15, 5:15] = 255
            cv2.imwrite(str(raw / cls / f"{cls} ({i})_mask.png"), mask)
    cv2.imwrite(str(raw / "benign" / "benign (1)_mask_1.png"), np.zeros((48, 48), np.uint8))
    out = tmp_path / "ds"
    assert main(["data", "import", str(raw), "--from", "class-folders", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "masks for 6/6 abnormal test images (1 with several files merged)" in printed
    assert len(list((out / "train" / "normal").iterdir())) == 3
    assert _train(out, tmp_path / "r", k="1") == 0
    yes_no = tmp_path / "yn"
    for cls in ("yes", "no"):
        (yes_no / cls).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(
                str(yes_no / cls / f"{i}.jpg"), (rng.random((48, 48)) * 255).astype(np.uint8)
            )
    assert (
        main(["data", "import", str(yes_no), "--from", "yes-no", "-o", str(tmp_path / "yn2")]) == 0
    )
    assert _train(tmp_path / "yn2", tmp_path / "r2", k="1") == 0


def test_missing_mask_warning_is_one_plain_line(phantom_root, tmp_path, capsys):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(phantom_root, data)
    masks = sorted((data / "test" / "masks").iterdir())
    masks[0].unlink()
    assert _train(data, tmp_path / "r") == 0
    err = capsys.readouterr().err
    assert "anomed: warning:" in err and "no mask for 1 of 3" in err and "UserWarning" not in err


def test_bench_speed_output_is_a_folder(tmp_path):
    argv = ["-q", "bench", "speed", "--method", "memorybank", "--image-size", "64"]
    argv += ["--batch-sizes", "1", "--precisions", "fp32", "--iters", "1", "--no-adapt"]
    assert main([*argv, "-o", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "speed.json").is_file()


def test_every_argument_is_checked_before_data_are_read(tmp_path, capsys):
    for argv, field in [
        (["--k", "-1"], "data.k"),
        (["--epochs", "0"], "train.epochs"),
        (["--batch-size", "0"], "train.batch_size"),
        (["--image-size", "7"], "backbone.image_size"),
        (["--seed", "-1"], "data.seed"),
        (["--device", "tpu"], "train.device"),
        (["--set", "train.epochs=abc"], "train.epochs"),
        (["--set", "train.target_fpr=2"], "train.target_fpr"),
        (["--set", "method_args.temperature=hot"], "method_args.temperature"),
    ]:
        code = main(["train", "--data", str(tmp_path / "nowhere"), *argv])
        err = capsys.readouterr().err
        assert code == 2 and field in err and "Traceback" not in err, (argv, err)
        assert "nowhere" not in err  # refused before the (missing) data were looked at


def test_non_finite_scores_never_read_normal(checkpoint):
    import anomed

    detector = anomed.load(checkpoint, device="cpu")
    good = np.full((40, 40), 0.5, np.float32)
    bad = good.copy()
    bad[0, 0] = math.nan
    first, second = detector.predict([good, bad])
    assert first.ok and first.decision in ("normal", "abnormal")
    assert not second.ok and second.decision is None and "NaN" in second.error
    assert detector.result("x", math.nan, None).decision is None


def test_namespace_defaults_are_not_lost():
    args = build_parser().parse_args(["-q", "methods"])
    assert isinstance(args, argparse.Namespace) and args.quiet


def test_predict_overwrite_never_deletes_its_inputs(tmp_path, capsys):
    """-o naming the folder that holds the input images is refused before any work, even with
    --overwrite (it used to empty that folder, inputs included, before scoring them)."""
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    code = main(
        ["-q", "predict", "no-such-run", str(scans / "a.png"), "-o", str(scans)] + ["--overwrite"]
    )
    assert code == 2 and "would delete" in capsys.readouterr().err
    assert (scans / "a.png").exists()


def test_eval_output_cannot_be_the_checkpoint(checkpoint, capsys):
    """eval -o CHECKPOINT --overwrite would replace the run folder with its own reports."""
    assert main(["-q", "eval", str(checkpoint), "-o", str(checkpoint), "--overwrite"]) == 2
    assert "would delete" in capsys.readouterr().err
    assert (checkpoint / "model.safetensors").is_file()


def test_a_folder_named_busi_that_is_not_mediclips_split_gets_no_published_row(tmp_path):
    from PIL import Image

    root = tmp_path / "busi"
    for split, label in (("train", "normal"), ("test", "normal"), ("test", "abnormal")):
        (root / split / label).mkdir(parents=True)
        for i in range(8 if split == "train" else 4):
            Image.new("L", (32, 32), 30 + 20 * i).save(root / split / label / f"{label}_{i}.png")
    out = tmp_path / "run"  # k=4: a protocol MediCLIP's table has
    args = ["-q", "train", "--data", str(root), "--k", "4", "--epochs", "1", "--model"]
    assert main([*args, "anomed-tiny", "--output", str(out), "--eval"]) == 0
    report = next((out / "eval").glob("*/metrics.md")).read_text()
    assert "published mediclip" not in report
    assert "published figures are for MediCLIP's split of BUSI; this test set differs" in report
