"""Every fenced ```bash / ```python block of the docs pages runs, so the docs cannot rot.

A page's blocks run in order in one temporary folder (a block may use what an earlier block of
its page wrote): bash with `set -e -o pipefail` and the tested tree's `anomed` first on PATH,
python in a fresh interpreter with the tested tree's src/ first on the path. A block is left out
when the line right before its fence is `<!-- not-run: REASON -->`; a page with a block marked
`<!-- slow -->` is a long one; every page runs in the slow suite (all its blocks, in order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docskit import ROOT, code_blocks, pages, runnable

TIMEOUT_S = 1800  # a whole page's run; a block that hangs fails the test instead


def _params():
    for page in pages():
        blocks = runnable(page)
        if not blocks:
            continue
        # every page's blocks train or score something: minutes in all, so the slow suite
        # (which CI runs too) holds them; `<!-- slow -->` still marks the long ones for readers
        yield pytest.param(page, id=str(page.relative_to(ROOT / "docs")), marks=[pytest.mark.slow])


def _shim(folder: Path) -> dict[str, str]:
    """`anomed` and `python` on PATH, both running this tree's code."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    anomed = bin_dir / "anomed"
    anomed.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        "'import sys; from anomed.cli import main; sys.exit(main())' \"$@\"\n"
    )
    anomed.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    # the guides' commands run from a clone's root, where the shipped examples sit
    (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p
    )
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": pythonpath,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "MPLBACKEND": "Agg",
        "HOME": str(folder),  # nothing a block writes lands in the user's home
    }


def _run(block, folder: Path, env: dict[str, str]) -> None:
    if block.lang == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    else:
        cmd = [sys.executable, "-c", block.code]
    done = subprocess.run(
        cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    if done.returncode != 0:
        pytest.fail(
            f"{block.where}: {block.lang} block exited {done.returncode}\n--- code\n{block.code}"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )


@pytest.mark.parametrize("page", list(_params()))
def test_page_code_blocks_run(page: Path, tmp_path: Path) -> None:
    env = _shim(tmp_path)
    for block in runnable(page):
        _run(block, tmp_path, env)


def test_every_block_is_run_or_says_why() -> None:
    """Shell and Python blocks are either run or marked not-run with a reason; every fence
    names its language (an unnamed fence would silently escape the runner)."""
    for page in pages():
        for block in code_blocks(page):
            assert block.lang, f"{block.where}: name the block's language (```bash, ```text, ...)"
            if block.lang in ("sh", "shell", "console", "py", "python3"):
                raise AssertionError(f"{block.where}: use ```bash or ```python, not {block.lang}")


def test_default_part_runs_some_blocks() -> None:
    """The quick suite runs at least the datasets guide's import example (no silent skip)."""
    quick = [p.name for p in pages() if runnable(p) and not any(b.slow for b in runnable(p))]
    assert "datasets.md" in quick and "bad-input.md" in quick, quick
