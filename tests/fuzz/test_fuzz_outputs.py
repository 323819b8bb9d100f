"""Output folders that would lose or mix results: refused before any work (exit 2, one line
with a fix); nothing written, and above all no input, dataset or checkpoint deleted, even with
--overwrite. The cases run on copies of the shared data and run, since a regression deletes."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_helpers import assert_clean_error, changed_outside, run_cli, tree_state

from anomed.engine.predict import read_predictions

UNWRITABLE = "/proc/anomed-fuzz-out"  # not writable even for root


@dataclass
class Ctx:
    tmp: Path
    data: Path  # a copy of the phantom dataset
    run: Path  # a copy of the trained run

    @property
    def images(self) -> Path:
        return self.data / "test" / "normal"

    @property
    def image(self) -> Path:
        return sorted(self.images.iterdir())[0]

    def inputs(self, command: str) -> Path:
        """The folder `command` reads: predict the images, train and eval the dataset."""
        return self.images if command == "predict" else self.data

    def file(self) -> Path:
        (self.tmp / "a_file.txt").write_text("x")
        return self.tmp / "a_file.txt"

    def used(self) -> Path:
        (self.tmp / "used").mkdir(exist_ok=True)
        (self.tmp / "used" / "old.txt").write_text("earlier results")
        return self.tmp / "used"

    def link(self, target: Path) -> Path:
        (self.tmp / "link").symlink_to(target)
        return self.tmp / "link"

    def predict(self, out: Path | str, *extra) -> list:  # noqa: ANN002
        return ["-q", "predict", self.run, self.images, "-o", out, *extra]

    def train(self, out: Path | str, *extra) -> list:  # noqa: ANN002
        base = ["-q", "train", "--data", self.data, "--k", "2", "--epochs", "1"]
        return [*base, "--image-size", "64", "-o", out, *extra]

    def eval(self, out: Path | str, *extra) -> list:  # noqa: ANN002
        return ["-q", "eval", self.run, "--data", self.data, "-o", out, *extra]


OW = "--overwrite"
Case = tuple[str, Callable[[Ctx], list], tuple[str, ...]]
CASES: list[Case] = []
for cmd in ("predict", "train", "eval"):
    CASES += [
        (f"{cmd}-a-file", lambda c, m=cmd: getattr(c, m)(c.file(), OW), ("is a file",)),
        (f"{cmd}-empty", lambda c, m=cmd: getattr(c, m)(""), ("empty path",)),
        (f"{cmd}-under-a-file", lambda c, m=cmd: getattr(c, m)(c.file() / "x"), ("a_file.txt",)),
        (f"{cmd}-unwritable", lambda c, m=cmd: getattr(c, m)(UNWRITABLE), ("cannot write",)),
        (f"{cmd}-used-folder", lambda c, m=cmd: getattr(c, m)(c.used()), ("not empty",)),
        (f"{cmd}-inside-data", lambda c, m=cmd: getattr(c, m)(c.inputs(m) / "o"), ("inside",)),
        (f"{cmd}-is-data", lambda c, m=cmd: getattr(c, m)(c.data, OW), ("data",)),
        (f"{cmd}-holds-data", lambda c, m=cmd: getattr(c, m)(c.tmp, OW), ("holds",)),
        (f"{cmd}-link-to-data", lambda c, m=cmd: getattr(c, m)(c.link(c.data), OW), ("data",)),
    ]
CASES += [
    ("predict-is-image-folder", lambda c: c.predict(c.images, OW), ("holds",)),
    (
        "predict-holds-named-image",
        lambda c: [*c.predict(c.images, OW)[:3], c.image, *c.predict(c.images, OW)[4:]],
        ("holds",),
    ),
    ("predict-is-run", lambda c: c.predict(c.run, OW), ("holds",)),
    ("eval-is-run", lambda c: c.eval(c.run, OW), ("holds",)),
    ("predict-link-to-run", lambda c: c.predict(c.link(c.run), OW), ("holds",)),
    ("ray-is-run", lambda c: c.predict(c.run, OW, "--engine", "ray"), ("holds",)),
    ("ray-holds-data", lambda c: c.predict(c.tmp, OW, "--engine", "ray"), ("holds",)),
    ("ray-inside-data", lambda c: c.predict(c.images / "o", "--engine", "ray"), ("inside",)),
    (
        "train-holds-shots-file",
        lambda c: c.train(c.tmp / "s", OW, "--shots-file", c.shots()),
        ("holds",),
    ),
]


def _shots(self: Ctx) -> Path:
    (self.tmp / "s").mkdir()
    (self.tmp / "s" / "shots.yaml").write_text("k: 1\nseed: 0\nshots: []\nval: []\n")
    return self.tmp / "s" / "shots.yaml"


Ctx.shots = _shots


@pytest.mark.parametrize(("name", "argv", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_output_folder_is_refused_and_nothing_is_lost(
    name, argv, fragments, tmp_path, phantom_root, fuzz_run, monkeypatch
):
    import shutil

    ctx = Ctx(tmp_path, Path(shutil.copytree(phantom_root, tmp_path / "data")), tmp_path / "run")
    shutil.copytree(fuzz_run, ctx.run)
    monkeypatch.chdir(tmp_path)
    args = argv(ctx)
    before = tree_state(tmp_path)
    result = run_cli(args)
    assert_clean_error(result, *fragments)
    assert changed_outside(before, tree_state(tmp_path)) == []


def test_overwrite_replaces_an_old_predict_folder_whole(fuzz_run, phantom_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.csv").write_text("old")
    image = sorted((phantom_root / "test" / "normal").iterdir())[0]
    result = run_cli(["-q", "predict", fuzz_run, image, "-o", out, "--overwrite"])
    assert result.code == 0 and not (out / "stale.csv").exists()
    assert [r["status"] for r in read_predictions(out)] == ["ok"]


def test_output_folder_with_a_non_utf8_name(fuzz_run, phantom_root, tmp_path):
    out = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"out_\xff")))
    image = sorted((phantom_root / "test" / "normal").iterdir())[0]
    result = run_cli(["-q", "predict", fuzz_run, image, "-o", out])
    assert result.code == 0 and "Traceback" not in result.err
    assert "out_\\xff" in result.out and (out / "predictions.json").is_file()
