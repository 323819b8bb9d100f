"""Bad CLI arguments and config values: each is refused before any data are read or anything is
written, with one line naming the flag or field and what it takes (exit 2, no traceback)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_helpers import assert_clean_error, changed_outside, run_cli, tree_state


@dataclass
class Ctx:
    data: Path  # the shared phantom dataset (read-only)
    run: Path  # the shared trained run (read-only)
    tmp: Path

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def folder(self, name: str) -> str:
        (self.tmp / name).mkdir()
        return str(self.tmp / name)

    @property
    def image(self) -> str:
        return str(next((self.data / "test" / "normal").iterdir()))

    def train(self, *extra: str) -> list[str]:
        base = ["-q", "train", "--data", str(self.data), "--k", "2", "--epochs", "1"]
        return [*base, "--image-size", "64", "-o", str(self.tmp / "out"), *extra]


ALIAS_BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\ntrain: [*b,*b]\n"
Case = tuple[str, Callable[[Ctx], list[str]], tuple[str, ...]]

TRAIN_CASES: list[Case] = [
    ("k-0", lambda c: c.train("--k", "0"), ("data.k",)),
    ("k-negative", lambda c: c.train("--k", "-1"), ("data.k",)),
    ("k-not-int", lambda c: c.train("--k", "two"), ("--k",)),
    ("k-above-pool", lambda c: c.train("--k", "100000"), ("k=100000",)),
    ("k-whole-pool", lambda c: c.train("--k", "12"), ("validation",)),
    ("k-abnormal-negative", lambda c: c.train("--k-abnormal", "-1"), ("k_abnormal",)),
    ("image-size-7", lambda c: c.train("--image-size", "7"), ("image_size",)),
    ("image-size-minus-14", lambda c: c.train("--image-size", "-14"), ("image_size",)),
    ("image-size-0", lambda c: c.train("--image-size", "0"), ("image_size",)),
    ("image-size-huge", lambda c: c.train("--image-size", "100000"), ("image_size",)),
    ("batch-size-minus-3", lambda c: c.train("--batch-size", "-3"), ("batch_size",)),
    ("batch-size-0", lambda c: c.train("--batch-size", "0"), ("batch_size",)),
    ("seed-minus-1", lambda c: c.train("--seed", "-1"), ("seed",)),
    ("seed-huge", lambda c: c.train("--seed", str(2**70)), ("seed", "4294967295")),
    ("device-tpu", lambda c: c.train("--device", "tpu"), ("tpu",)),
    ("device-cuda-index", lambda c: c.train("--device", "cuda:9"), ("cuda",)),
    ("device-mps", lambda c: c.train("--device", "mps"), ("mps",)),
    ("epochs-0", lambda c: c.train("--epochs", "0"), ("train.epochs",)),
    ("epochs-minus-1", lambda c: c.train("--epochs", "-1"), ("train.epochs",)),
    ("method-unknown", lambda c: c.train("--method", "nope"), ("nope",)),
    ("layout-unknown", lambda c: c.train("--layout", "nope"), ("nope",)),
    ("layout-wrong", lambda c: c.train("--layout", "bmad"), ("--layout folder",)),
    ("preset-unknown", lambda c: c.train("--preset", "x"), ("--preset",)),
    ("preprocess-unknown", lambda c: c.train("--preprocess", "x"), ("preprocess",)),
    ("select-unknown", lambda c: c.train("--select", "x"), ("--select",)),
    ("model-unknown", lambda c: c.train("--model", "nosuchmodel"), ("nosuchmodel",)),
    ("model-local-dir-missing", lambda c: c.train("--model", "local-dir:/nope"), ("/nope",)),
    ("pretrained-missing", lambda c: c.train("--pretrained", "/nope.pt"), ("/nope.pt",)),
    ("pretrained-garbage", lambda c: c.train("--pretrained", c.file("w.pt", "junk")), ("w.pt",)),
    ("data-missing", lambda c: ["train", "--data", str(c.tmp / "nope")], ("nope",)),
    ("data-a-file", lambda c: ["train", "--data", c.file("f.txt", "x")], ("f.txt",)),
    ("data-empty-folder", lambda c: c.train() + ["--data", c.folder("empty")], ("layout",)),
    ("output-inside-data", lambda c: ["train", "--data", str(c.tmp)], ("inside the input",)),
    ("data-none", lambda c: ["train"], ("--data",)),
    ("shots-missing", lambda c: c.train("--shots-file", "/nope.yaml"), ("nope.yaml",)),
    ("shots-binary", lambda c: c.train("--shots-file", c.file("s.yaml", b"\xff\x00")), ("s.yaml",)),
    ("shots-not-a-list", lambda c: c.train("--shots-file", c.file("s.yaml", "- 1\n")), ("s.yaml",)),
    ("shots-txt-binary", lambda c: c.train("--shots-file", c.file("s.txt", b"\xff")), ("s.txt",)),
    ("shots-txt-garbage", lambda c: c.train("--shots-file", c.file("s.txt", "x\n")), ("s.txt",)),
]

SET_CASES: list[Case] = [
    (f"set-{key}={value}", lambda c, kv=f"{key}={value}": c.train("--set", kv), (field,))
    for key, value, field in [
        ("train.epochs", "abc", "train.epochs"),
        ("train.epochs", "[1, 2]", "train.epochs"),
        ("train.val_every", "0", "val_every"),
        ("train.target_fpr", "2", "target_fpr"),
        ("train.target_fpr", "-0.1", "target_fpr"),
        ("train.target_fpr", ".nan", "target_fpr"),
        ("train.target_fpr", ".inf", "target_fpr"),
        ("train.amp", "maybe", "train.amp"),
        ("train.num_workers", "1000", "num_workers"),
        ("train.cache_budget_gib", "0", "cache_budget_gib"),
        ("train.cache_variants", "-1", "cache_variants"),
        ("train.select", "best", "train.select"),
        ("train.device", "tpu", "tpu"),
        ("train.epochs", "!!python/name:os.system", "train.epochs"),
        ("data.n_val", "0", "validation"),
        ("data.n_val", "-1", "n_val"),
        ("data.train_roots", "5", "train_roots"),
        ("data.k", "1e400", "data.k"),
        ("backbone.init_seed", "-1", "init_seed"),
        ("backbone.preprocess", "x", "preprocess"),
        ("preset", "x", "preset"),
        ("method_args.lr", "abc", "method_args.lr"),
        ("method_args.nokey", "1", "nokey"),
        ("nosuch.key", "1", "nosuch"),
        ("train", "3", "train"),
        ("train.epochs.x", "1", "epochs"),
    ]
] + [
    ("set-no-equals", lambda c: c.train("--set", "train.epochs"), ("key=value",)),
    ("set-empty-key", lambda c: c.train("--set", "=3"), ("key=value",)),
]

CONFIG_CASES: list[Case] = [
    (f"config-{name}", lambda c, n=name, t=text: c.train("--config", c.file(f"{n}.yaml", t)), f)
    for name, text, f in [
        ("wrong-type", "train:\n  val_every: ten\n", ("val_every",)),
        ("python-tag", "train: !!python/object/apply:os.system ['echo PWNED']\n", ("yaml",)),
        ("alias-bomb", ALIAS_BOMB, ("alias",)),
        ("top-level-list", "- 1\n- 2\n", ("mapping",)),
        ("empty", "", ("mapping",)),
        ("binary", b"\xff\xfe\x00garbage", ("utf-8",)),
        ("section-not-mapping", "train: 5\n", ("train",)),
        ("typo", "trian:\n  epochs: 1\n", ("did you mean 'train'",)),
        ("nan", "train:\n  target_fpr: .nan\n", ("target_fpr",)),
        ("too-large", "# " + "x" * (2 << 20), ("too large",)),
        ("deeply-nested", "a: " + "[" * 5000 + "]" * 5000 + "\n", ("nested",)),
        ("bad-method-option", "method_args:\n  temperature: hot\n", ("temperature",)),
    ]
] + [
    ("config-missing", lambda c: c.train("--config", "/nope.yaml"), ("/nope.yaml",)),
    ("config-a-folder", lambda c: c.train("--config", str(c.tmp)), ("config",)),
]

OTHER_CASES: list[Case] = [
    ("eval-batch-size-0", lambda c: ["eval", str(c.run), "--batch-size", "0"], ("batch-size",)),
    ("eval-device-tpu", lambda c: ["eval", str(c.run), "--device", "tpu"], ("tpu",)),
    ("eval-data-missing", lambda c: ["eval", str(c.run), "--data", "/nope"], ("/nope",)),
    ("eval-run-missing", lambda c: ["eval", str(c.tmp / "nope")], ("nope",)),
    ("predict-batch-size-0", lambda c: ["predict", str(c.run), c.image, "--batch-size", "0"], ()),
    (
        "predict-batch-size-neg",
        lambda c: ["predict", str(c.run), c.image, "--batch-size", "-5"],
        (),
    ),
    (
        "predict-batch-size-huge",
        lambda c: ["predict", str(c.run), c.image, "--batch-size", "1e12"],
        (),
    ),
    ("predict-device-tpu", lambda c: ["predict", str(c.run), c.image, "--device", "tpu"], ("tpu",)),
    ("predict-run-missing", lambda c: ["predict", str(c.tmp / "nope"), c.image], ("nope",)),
    ("predict-no-inputs", lambda c: ["predict", str(c.run)], ("inputs",)),
    ("predict-nothing-scorable", lambda c: ["predict", str(c.run), "/nope.png"], ("/nope.png",)),
    ("unknown-command", lambda c: ["frobnicate"], ("frobnicate",)),
    ("unknown-flag", lambda c: ["train", "--frobnicate"], ("--frobnicate",)),
]

ALL = TRAIN_CASES + SET_CASES + CONFIG_CASES + OTHER_CASES


@pytest.mark.parametrize(("name", "argv", "fragments"), ALL, ids=[c[0] for c in ALL])
def test_bad_argument_is_refused_before_any_work(
    name, argv, fragments, phantom_root, fuzz_run, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a default output folder would land in the snapshot
    ctx = Ctx(phantom_root, fuzz_run, tmp_path)
    args = argv(ctx)
    watched = [tmp_path, phantom_root, fuzz_run]
    before = [tree_state(p) for p in watched]
    result = run_cli(args)
    assert_clean_error(result, *fragments)
    assert "PWNED" not in result.out + result.err  # no YAML tag ever runs
    for path, state in zip(watched, before, strict=True):
        assert changed_outside(state, tree_state(path)) == [], path
