"""Damaged, tampered and hostile checkpoints: predict and eval refuse each with one line naming
the checkpoint file and a fix (exit 2), load nothing unsafe and write nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from fuzz_helpers import assert_clean_error, changed_outside, run_cli, tree_state
from safetensors.numpy import load_file, save_file

from anomed.errors import AnomedError

WEIGHTS, CONFIG, MANIFEST = "model.safetensors", "config.yaml", "manifest.json"


def rehash(run: Path) -> None:
    """Re-sign the manifest, so only the check under test can catch the damage."""
    manifest = json.loads((run / MANIFEST).read_text())
    for name in (WEIGHTS, CONFIG):
        manifest["sha256"][name] = hashlib.sha256((run / name).read_bytes()).hexdigest()
    (run / MANIFEST).write_text(json.dumps(manifest))


def edit_config(change: Callable[[dict], None], sign: bool = True) -> Callable[[Path], None]:
    def mutate(run: Path) -> None:
        cfg = yaml.safe_load((run / CONFIG).read_text())
        change(cfg)
        (run / CONFIG).write_text(yaml.safe_dump(cfg))
        if sign:
            rehash(run)

    return mutate


def setting(path: str, value) -> Callable[[Path], None]:  # noqa: ANN001
    def change(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[last] = value

    return edit_config(change)


def config_text(text: str | bytes) -> Callable[[Path], None]:
    def mutate(run: Path) -> None:
        (run / CONFIG).write_bytes(text if isinstance(text, bytes) else text.encode())
        rehash(run)

    return mutate


def edit_weights(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    def mutate(run: Path) -> None:
        save_file(change(load_file(str(run / WEIGHTS))), str(run / WEIGHTS))
        rehash(run)

    return mutate


def weights_bytes(data: bytes) -> Callable[[Path], None]:
    def mutate(run: Path) -> None:
        (run / WEIGHTS).write_bytes(data)
        rehash(run)

    return mutate


def one_nan(weights: dict) -> dict:
    key = next(k for k, v in weights.items() if v.dtype.kind == "f")
    weights[key] = weights[key].copy()
    weights[key].flat[0] = np.nan
    return weights


def replace_with(kind: str) -> Callable[[Path], None]:
    def mutate(run: Path) -> None:
        (run / WEIGHTS).unlink()
        if kind == "folder":
            (run / WEIGHTS).mkdir()
        elif kind == "fifo":
            os.mkfifo(run / WEIGHTS)
        else:
            (run / WEIGHTS).symlink_to("/dev/zero")

    return mutate


def interrupted_swap(run: Path) -> None:
    """What a kill between the two fallback renames of a retrain leaves."""
    aside = run.parent / f".{run.name}.old-x1"
    aside.mkdir()
    run.rename(aside / run.name)


BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nrun: [*b,*b,*b]\n"
CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("folder-missing", shutil.rmtree, ("no such checkpoint",)),
    ("a-file", lambda r: (shutil.rmtree(r), r.write_text("x")), ("no such checkpoint",)),
    ("empty-folder", lambda r: [p.unlink() for p in r.iterdir()], (WEIGHTS,)),
    ("weights-missing", lambda r: (r / WEIGHTS).unlink(), (WEIGHTS,)),
    ("config-missing", lambda r: (r / CONFIG).unlink(), (CONFIG,)),
    ("manifest-missing", lambda r: (r / MANIFEST).unlink(), (MANIFEST,)),
    ("manifest-binary", lambda r: (r / MANIFEST).write_bytes(b"\xff\x00"), (MANIFEST,)),
    ("manifest-a-list", lambda r: (r / MANIFEST).write_text("[1]"), (MANIFEST,)),
    ("manifest-nested", lambda r: (r / MANIFEST).write_text("[" * 99999), (MANIFEST,)),
    ("config-edited-unsigned", edit_config(lambda c: None, sign=False), (CONFIG, MANIFEST)),
    ("weights-swapped-unsigned", lambda r: (r / WEIGHTS).write_bytes(b"x"), (WEIGHTS,)),
    ("weights-nan", edit_weights(one_nan), ("non-finite",)),
    ("weights-inf", edit_weights(lambda w: {k: v * np.inf for k, v in w.items()}), ("non-finite",)),
    ("weights-wrong-shape", edit_weights(lambda w: {k: v[:1] for k, v in w.items()}), (WEIGHTS,)),
    ("weights-key-missing", edit_weights(lambda w: dict(list(w.items())[1:])), ("missing",)),
    ("weights-key-extra", edit_weights(lambda w: {**w, "x": np.zeros(2, "f4")}), ("unexpected",)),
    ("weights-garbage", weights_bytes(b"garbage" * 9), (WEIGHTS,)),
    ("weights-empty", weights_bytes(b""), (WEIGHTS,)),
    ("weights-header-2e62", weights_bytes((2**62).to_bytes(8, "little") + b"{}"), (WEIGHTS,)),
    ("weights-a-folder", replace_with("folder"), (WEIGHTS,)),
    ("weights-a-fifo", replace_with("fifo"), (WEIGHTS,)),
    ("weights-dev-zero", replace_with("dev-zero"), (WEIGHTS,)),
    ("threshold-nan", setting("calibration.threshold", float("nan")), ("threshold",)),
    ("threshold-inf", setting("calibration.threshold", float("inf")), ("threshold",)),
    ("threshold-text", setting("calibration.threshold", "high"), ("threshold",)),
    ("map-min-nan", setting("calibration.map_min", float("nan")), ("map_min",)),
    ("map-min-above-max", setting("calibration.map_min", 1e9), ("map_min",)),
    ("target-fpr-2", setting("calibration.target_fpr", 2.0), ("target_fpr",)),
    ("method-other", setting("run.method", "winclip"), (CONFIG,)),
    ("method-unknown", setting("run.method", "nope"), ("nope",)),
    ("method-option-bad", setting("run.method_args.lr", "fast"), ("lr",)),
    ("method-option-unknown", setting("run.method_args.zzz", 1), ("zzz",)),
    ("image-size-7", setting("run.backbone.image_size", 7), ("image_size",)),
    ("image-size-other", setting("run.backbone.image_size", 96), ("retrain",)),
    ("init-seed-other", setting("run.backbone.init_seed", 5), ("retrain",)),
    ("fingerprint-nan", setting("backbone_fingerprint", float("nan")), ("fingerprint",)),
    ("model-unknown", setting("run.backbone.model", "nosuch"), ("nosuch",)),
    ("device-tpu", setting("run.train.device", "tpu"), ("tpu",)),
    ("python-tag", config_text("run: !!python/object/apply:os.system ['echo PWNED']\n"), ("yaml",)),
    ("alias-bomb", config_text(BOMB), ("alias",)),
    ("config-a-list", config_text("- 1\n"), ("mapping",)),
    ("config-empty", config_text(""), ("mapping",)),
    ("config-binary", config_text(b"\xff\xfe\x00\x01"), ("utf-8",)),
    ("config-unknown-key", setting("zzz", 1), ("zzz",)),
    ("config-without-run", edit_config(lambda c: c.pop("run")), ("run",)),
    ("config-too-large", config_text("# " + "x" * (2 << 20)), ("too large",)),
    ("config-deeply-nested", config_text("run: " + "[" * 5000 + "]" * 5000), ("nested",)),
    ("shots-not-a-list", setting("shots", 5), ("shots",)),
    ("fit-not-a-mapping", setting("fit", [1]), ("fit",)),
    ("interrupted-swap", interrupted_swap, (".old-x1", "mv ")),
]


@pytest.mark.parametrize(("name", "mutate", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_damaged_checkpoint_is_refused(name, mutate, fragments, run_copy, phantom_root, tmp_path):
    mutate(run_copy)
    image = next((phantom_root / "test" / "normal").iterdir())
    before = tree_state(tmp_path)
    result = run_cli(["-q", "predict", run_copy, image, "-o", tmp_path / "out"])
    assert_clean_error(result, *fragments)
    assert "PWNED" not in result.out + result.err
    assert changed_outside(before, tree_state(tmp_path)) == []


EVAL_CASES = [c for c in CASES if c[0] in ("weights-nan", "threshold-nan", "python-tag")]


@pytest.mark.parametrize(
    ("name", "mutate", "fragments"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES]
)
def test_damaged_checkpoint_is_refused_by_eval(
    name, mutate, fragments, run_copy, phantom_root, tmp_path
):
    mutate(run_copy)
    before = tree_state(tmp_path)
    argv = ["-q", "eval", run_copy, "--data", phantom_root, "-o", tmp_path / "out"]
    assert_clean_error(run_cli(argv), *fragments)
    assert changed_outside(before, tree_state(tmp_path)) == []


def test_python_api_refuses_with_anomed_error_only(run_copy):
    import anomed

    one_nan_run = edit_weights(one_nan)
    one_nan_run(run_copy)
    with pytest.raises(AnomedError, match="non-finite"):
        anomed.load(run_copy, device="cpu")
    for bad in (0, -1, "8", 1.5, True):
        with pytest.raises(AnomedError, match="batch_size"):
            anomed.load(run_copy, device="cpu", batch_size=bad)
    with pytest.raises(AnomedError, match="tpu"):
        anomed.load(run_copy, device="tpu")
