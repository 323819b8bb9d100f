"""Output folders: never one that would delete or re-read the inputs (anomed.outputs)."""

from __future__ import annotations

import os

import pytest

from anomed.errors import AnomedError
from anomed.outputs import check_output_dir


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "data" / "scans").mkdir(parents=True)
    (tmp_path / "data" / "scans" / "a.png").write_bytes(b"x")
    return tmp_path


def test_output_holding_an_input_folder_is_refused_even_with_overwrite(tree):
    with pytest.raises(AnomedError, match="holds .*scans.* would delete"):
        check_output_dir(tree / "data", overwrite=True, inputs=[tree / "data" / "scans"])


def test_output_holding_an_input_file_is_refused_even_with_overwrite(tree):
    image = tree / "data" / "scans" / "a.png"
    with pytest.raises(
        AnomedError, match="a.png, which this run reads, so replacing the folder would delete it"
    ):
        check_output_dir(tree / "data" / "scans", overwrite=True, inputs=[image])


def test_protected_path_inside_the_output_is_refused(tree):
    with pytest.raises(AnomedError, match="would delete"):
        check_output_dir(tree / "data", overwrite=True, protect=[tree / "data" / "scans"])


def test_output_inside_an_input_through_a_symlink_is_refused(tree):
    os.symlink(tree / "data", tree / "link")
    with pytest.raises(AnomedError, match="inside the input folder"):
        check_output_dir(tree / "link" / "scans" / "out", inputs=[tree / "data" / "scans"])


def test_output_beside_the_inputs_is_accepted(tree):
    out = check_output_dir(tree / "out", overwrite=True, inputs=[tree / "data" / "scans"])
    assert out == tree / "out"


def test_a_dangling_symlink_output_is_refused_before_any_work(tree):
    """A link to a missing folder passed the checks, then failed with a traceback when the
    run folder was swapped in (rename onto a link) or emptied (mkdir on a link)."""
    os.symlink(tree / "gone", tree / "out")
    with pytest.raises(AnomedError, match="symbolic link to .*gone, which does not exist"):
        check_output_dir(tree / "out", overwrite=True)


def test_an_output_needs_a_writable_parent(tree, monkeypatch):
    """train/eval/import build the new folder beside the old one and swap it in at the end: an
    existing writable folder under a read-only parent passed the check, and the run failed
    with a PermissionError traceback after all its work. Writability is probed (we run as
    root here, so a read-only parent is simulated)."""
    import tempfile

    (tree / "out").mkdir()
    real = tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):
        if str(dir) == str(tree):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(AnomedError, match=f"cannot write in {tree}"):
        check_output_dir(tree / "out", overwrite=True)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_folders_and_files_get_the_umask_mode(tree, umask_022):
    """Run folders came out 0700 and result files 0600 (mkdtemp / mkstemp modes), so a
    colleague or a service account could not read a run or its reports."""
    from anomed.engine.checkpoint import _atomic_write
    from anomed.outputs import staged_dir, write_json

    with staged_dir(tree / "run") as stage:
        write_json(stage / "metrics.json", {"a": 1})
        _atomic_write(stage / "config.yaml", lambda tmp: open(tmp, "w").close())
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tree / "run").rglob("*")}
    assert (tree / "run").stat().st_mode & 0o777 == 0o755
    assert modes == {"metrics.json": 0o644, "config.yaml": 0o644}
