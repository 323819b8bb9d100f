"""The generated reference pages say what the code does: the CLI page holds exactly what
`anomed ... --help` prints for every command, and the config table lists every field."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import typing

import pytest
from docskit import DOCS, load_hook

from anomed.cli import main
from anomed.config import RunConfig

HOOK = load_hook()


def _help_output(path: tuple[str, ...]) -> str:
    """What `anomed PATH --help` prints, through the CLI's own entry point."""
    out = io.StringIO()
    with HOOK.help_width(), contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def _cli_page() -> str:
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert "<!-- generated: cli -->" in page, "the CLI page lost its generated block"
    return HOOK.expand(page)


def test_cli_page_is_every_commands_help() -> None:
    page = _cli_page()
    paths = [path for path, _ in HOOK.commands()]
    assert len(paths) > 15, paths  # the root, its commands and the data/bench subcommands
    for path in paths:
        name = " ".join(("anomed", *path))
        section = re.search(rf"`{re.escape(name)}`\n\n```text\n(.*?)```\n", page, re.DOTALL)
        assert section, f"no section for {name!r} on the CLI page"
        assert section.group(1) == _help_output(path).rstrip() + "\n", f"{name}: page != --help"


def test_cli_page_lists_no_command_the_parser_lacks() -> None:
    page = _cli_page()
    listed = set(re.findall(r"^#+ `(anomed[^`]*)`$", page, re.MULTILINE))
    known = {" ".join(("anomed", *path)) for path, _ in HOOK.commands()}
    assert listed == known


def _leaf_fields(cls, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            names += _leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


def test_config_table_lists_every_field_with_its_default() -> None:
    table = HOOK.run_config_table()
    defaults = {}
    for key in _leaf_fields(RunConfig):
        node = RunConfig()
        for part in key.split("."):
            node = getattr(node, part)
        defaults[key] = node
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0].strip("`")] = cells
    for key, default in defaults.items():
        assert key in rows, f"{key} is missing from the config table"
        assert rows[key][2] == f"`{default!r}`", f"{key}: default {rows[key][2]} != {default!r}"
    assert rows["backbone.pretrained"][1] == "str \\| None"  # shown as "str | None"
    assert "`'anomed'`, `'reference'`, `'paper'`" in table  # Literal choices are listed
    assert ">= 1" in table and "like auto, cpu, cuda or cuda:1" in table  # bounds and forms


@pytest.mark.parametrize(
    "method",
    [
        "mediclip",
        "mvfa",
        "mlalp",
        "madclip",
        "ppad",
        "condprompt",
        "winclip",
        "winclip+",
        "memorybank",
    ],
)
def test_method_pages_show_their_switches(method: str) -> None:
    from anomed.methods import METHODS

    page_name = "winclip" if method.startswith("winclip") else method
    page = (DOCS / "methods" / f"{page_name}.md").read_text(encoding="utf-8")
    assert f"<!-- generated: method-config {method} -->" in page
    table = HOOK.method_config_table(method)
    for f in dataclasses.fields(METHODS.get(method).config_class):
        assert f"| `{f.name}` |" in table, f"{method}: {f.name} missing"


def test_every_method_has_a_page() -> None:
    from anomed.methods import METHODS

    nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    for name in METHODS.names():
        page = "winclip" if name.startswith("winclip") else name
        assert (DOCS / "methods" / f"{page}.md").is_file(), name
        assert f"methods/{page}.md" in nav, name


def test_fidelity_page_includes_the_file() -> None:
    page = (DOCS / "guides" / "fidelity.md").read_text(encoding="utf-8")
    assert "<!-- generated: include FIDELITY.md -->" in page
    shown = HOOK.expand(page)
    fidelity = (DOCS.parent / "FIDELITY.md").read_text(encoding="utf-8")
    assert "## Fidelity: anomed, the papers and the reference code" in shown
    # every line of FIDELITY.md is on the page (headings one level down)
    for line in fidelity.splitlines():
        assert (("#" + line) if line.startswith("#") else line) in shown
