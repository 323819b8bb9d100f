"""Output folders and result files a user can trust.

- A folder is checked before any work: not a file, writable (probed), not inside an input
  folder, not holding an input, and empty unless the user asked to overwrite it, so an old
  result never sits beside a new one and no input is ever replaced.
- A folder is written as one unit: everything goes into a hidden sibling, which replaces the
  target only when complete (an interrupted run leaves the old folder or nothing, never a mix).
  The sibling's name holds the writer's process id and host (`.<name>.partial-<pid>@<host>-*`);
  the next write to the same place removes the ones whose process is gone, and names (with the
  fix) those it cannot tell about (another host, an older anomed).
- JSON is strict: a non-finite number is written as null, never as a bare NaN.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from anomed.errors import AnomedError


def check_output_dir(
    path: str | Path,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
    flag: str = "--output",
    protect: Sequence[str | Path] = (),
) -> Path:
    """The absolute output folder, after refusing every place that would lose or mix results.

    `inputs` (files or folders) may neither hold the output (a later run would read it) nor
    lie inside it (replacing it would delete them); `protect` (e.g. the checkpoint being
    evaluated, whose reports may go inside it) must only not lie inside it. Paths are compared
    as given and with symbolic links resolved. The folder and its parent (where `staged_dir`
    builds the new folder) must be writable."""
    if str(path).strip() == "":
        raise AnomedError(f"{flag} '': an empty path. Fix: name a folder, e.g. {flag} runs/x.")
    out = Path(os.path.abspath(Path(path).expanduser()))
    if out.is_symlink() and not out.exists():
        raise AnomedError(
            f"{flag} {path}: a symbolic link to {os.readlink(out)}, which does not exist. Fix: "
            f"create that folder, remove the link, or pick another {flag}."
        )
    if out.exists() and not out.is_dir():
        raise AnomedError(f"{flag} {path}: is a file, not a folder. Fix: pick another {flag}.")
    for item in [*inputs, *protect]:
        source = Path(os.path.abspath(Path(item).expanduser()))
        if os.path.lexists(source) and _within(source, out):
            raise AnomedError(
                f"{flag} {path}: holds {item}, which this run reads, so replacing the folder "
                f"would delete it. Fix: pick a {flag} that does not contain your inputs."
            )
    for item in inputs:
        source = Path(os.path.abspath(Path(item).expanduser()))
        if source.is_dir() and _within(out, source):
            raise AnomedError(
                f"{flag} {path}: lies inside the input folder {item}, so a later run would "
                f"read its own outputs. Fix: pick a {flag} outside {item}."
            )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise AnomedError(
            f"{flag} {path}: folder is not empty (earlier results). Fix: pass --overwrite to "
            f"replace it, or pick another {flag}."
        )
    _check_writable(out, flag, path)
    return out


def _within(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies inside it, as written or with symbolic links resolved."""
    for p, f in ((path, folder), (Path(os.path.realpath(path)), Path(os.path.realpath(folder)))):
        if p == f or f in p.parents:
            return True
    return False


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(out: Path, flag: str, given: str | Path) -> None:
    """Probe by creating (and removing) a folder where the outputs and their staging sibling
    go: permission bits alone miss read-only mounts, /proc and root's special cases."""
    for parent in {_nearest_existing(out), _nearest_existing(out.parent)}:
        if not parent.is_dir():
            raise AnomedError(f"{flag} {given}: {parent} is a file. Fix: pick another {flag}.")
        try:
            os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".anomed-write-check-"))
        except OSError as exc:
            raise AnomedError(
                f"{flag} {given}: cannot write in {parent} ({exc.strerror or exc}). Fix: pick a "
                "folder you can write to."
            ) from exc


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of `target`; on success it replaces `target` whole.

    On an exception the sibling is removed and `target` is left as it was. On Linux the swap is
    one atomic exchange (renameat2 RENAME_EXCHANGE): a reader or a kill sees the old folder or
    the new one, nothing in between. Elsewhere it is two renames; a kill between them leaves
    the old folder under `.<name>.old-*/` (see `interrupted_swap`), never a mix.
    """
    target = Path(os.path.abspath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    stage = temp_sibling(target, f".partial-{os.getpid()}@{_HOST}-")
    stage.mkdir()  # mode from the umask, like any folder (mkdtemp's 0700 would stay on the run)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if target.is_dir() and not target.is_symlink() and _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # now holds the old folder
        return
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _process_gone(pid: int) -> bool:
    """True when no process `pid` runs on this host (a live one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the hidden partial folders beside `target` that killed writers on this host left
    (their process is gone); warn, with the fix, about those that cannot be judged (another
    host, or named by an older anomed). Returns the folders removed."""
    removed, unknown = [], []
    for partial in sorted(target.parent.glob(f".{target.name}.partial-*")):
        tag = partial.name[len(f".{target.name}.partial-") :]
        pid, _, rest = tag.partition("@")
        if pid.isdigit() and rest.startswith(f"{_HOST}-"):
            if _process_gone(int(pid)) and partial.is_dir() and not partial.is_symlink():
                shutil.rmtree(partial, ignore_errors=True)
                removed.append(partial)
        elif partial.is_dir():
            unknown.append(partial)
    if unknown:
        warnings.warn(
            f"{len(unknown)} partial folder(s) beside {target} left by an interrupted run that "
            f"this process cannot check (another host or an older anomed): "
            f"{', '.join(p.name for p in unknown[:3])}. Fix: if no run is writing there, remove "
            f"them (rm -r '{unknown[0]}'{' ...' if len(unknown) > 1 else ''}).",
            stacklevel=3,
        )
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0  # EINVAL (file system without it), ENOSYS: fall back to two renames


def interrupted_swap(target: str | Path) -> Path | None:
    """The previous `target` that a kill between the two fallback renames left behind."""
    target = Path(os.path.abspath(target))
    found = sorted(target.parent.glob(f".{target.name}.old-*/{target.name}"))
    return found[-1] if found else None


def clear_dir(path: Path) -> None:
    """Empty a folder (the user passed --overwrite); create it if missing."""
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)


def finite_or_none(value: Any) -> Any:
    """Recursively replace NaN/Inf floats (and numpy scalars) with None; JSON-safe."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(payload: Any) -> str:
    """Strict JSON text (no NaN/Infinity tokens)."""
    return json.dumps(finite_or_none(payload), indent=1, allow_nan=False)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write strict JSON atomically (a reader never sees half a file)."""
    return write_text(path, dumps_json(payload) + "\n")


def temp_sibling(path: Path, tag: str = ".") -> Path:
    """An unused hidden name beside `path` (`.<name><tag><random>`), not created: files and
    folders made there get the umask's mode, unlike mkstemp's 0600 / mkdtemp's 0700."""
    return path.with_name(f".{path.name}{tag}{secrets.token_hex(6)}")


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically: a temporary sibling, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "x") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
