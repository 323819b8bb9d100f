"""Helpers of the fuzz suite: the CLI run in-process with a hang guard, file-tree snapshots and
the checks every hostile case shares (exit code, one message with a fix, no traceback)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from anomed.cli import main

HANG_SECONDS = 120  # a single in-process case; the subprocess cases pass their own timeout


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body runs longer than `seconds`."""

    def alarm(signum, frame):  # noqa: ANN001
        raise TimeoutError(f"hang: still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(argv: list) -> CliResult:
    """`anomed.cli.main(argv)` in-process with stdout/stderr captured; any exception but
    SystemExit (argparse) propagates and fails the test: it would have been a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with hang_guard(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([a if isinstance(a, str) else os.fspath(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


def tree_state(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `root` (links not followed): files with (size, mtime), folders None."""
    state: dict[str, tuple[int, int] | None] = {}
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs:
            state[os.fsdecode(os.path.join(folder, name))] = None
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            state[os.fsdecode(path)] = (st.st_size, st.st_mtime_ns)
    return state


def changed_outside(before: dict, after: dict, *allowed: Path) -> list[str]:
    """Paths created, removed or modified outside the `allowed` folders."""
    keep = [os.path.abspath(a) for a in allowed]
    changed = {p for p in before.keys() | after.keys() if before.get(p, 0) != after.get(p, 0)}
    inside = lambda p: any(p == k or p.startswith(k + os.sep) for k in keep)  # noqa: E731
    return sorted(p for p in changed if not inside(p))


def assert_clean_error(result: CliResult, *fragments: str, fix: bool = True) -> str:
    """Exit 2, one stderr line `anomed: error: ...` (argparse: its usage, then one error
    line) holding every fragment (lower-case compare) and, with `fix`, what to do; returns it."""
    assert result.code == 2, (result.code, result.out[-400:], result.err[-800:])
    assert "Traceback" not in result.err
    lines = [line for line in result.err_lines if not line.startswith("anomed: warning:")]
    if lines and lines[0].startswith("usage:"):  # argparse: the usage (the fix), then the error
        lines, fix = lines[-1:], False
        assert ": error: " in lines[0], lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("anomed"), line
    for fragment in fragments:
        assert fragment.lower() in line.lower(), (fragment, line)
    if fix:
        assert names_a_fix(line), line
    return line


FIX_WORDS = (
    "fix",
    "must be",
    "choose",
    "expected",
    "use ",
    "known",
    "needs",
    "did you mean",
    "invalid choice",
    "invalid int",
)


def names_a_fix(message: str) -> bool:
    """True when the message says what to do (a `Fix:`, or the values a field takes)."""
    return any(word in message.lower() for word in FIX_WORDS)
