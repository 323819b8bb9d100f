"""MkDocs hook: pages made from the code when the site is built, so they cannot go stale.

A page asks for generated text with a marker line:

* `<!-- generated: cli -->`: every command's `--help` (walks `anomed.cli.build_parser()`);
* `<!-- generated: run-config -->`: every RunConfig field with its type, default, allowed
  values and the comment written beside it in config.py;
* `<!-- generated: method-config NAME -->`: a method's `method_args` with their defaults and
  the values of its `reference` and `paper` presets;
* `<!-- generated: published NAME -->`: the paper's figures held in `anomed.published`;
* `<!-- generated: include FILE -->`: a Markdown file of the repository (FIDELITY.md), its
  headings one level down, so it is shown, never copied.

tests/docs/test_reference.py calls the same functions and compares them with the CLI's real
`--help` output. The tree's own src/ goes first on the path, so the site documents this tree.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import io
import os
import re
import sys
import tokenize
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

HELP_COLUMNS = 100  # --help is wrapped to the terminal; the page uses one fixed width
MARKER = re.compile(r"^<!-- generated: ([a-z-]+)(?: ([\w.+/-]+))? -->$", re.MULTILINE)


# ------------------------------------------------------------------ the command line


@contextlib.contextmanager
def help_width(columns: int = HELP_COLUMNS) -> Iterator[None]:
    """argparse wraps help to $COLUMNS; fix it while help is formatted."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def commands(
    parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, its parser) for the root and every subcommand, depth first, in the order
    the parser lists them."""
    if parser is None:
        from anomed.cli import build_parser

        parser = build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def help_text(parser: argparse.ArgumentParser) -> str:
    with help_width():
        return parser.format_help().rstrip() + "\n"


def cli_reference() -> str:
    """Markdown: one section per command with its `--help`, in the parser's order."""
    parts = []
    for path, parser in commands():
        name = " ".join(("anomed", *path))
        level = "#" * min(2 + max(len(path) - 1, 0), 4)
        parts.append(f"{level} `{name}`\n\n```text\n{help_text(parser)}```\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ configuration fields


def field_comments(cls: type) -> dict[str, str]:
    """Each dataclass field's comment in `cls`'s own source: the comment lines just above it
    and the one at the end of its line, joined."""
    source = inspect.getsource(cls)
    comments: dict[str, str] = {}
    above: list[str] = []
    lines = source.splitlines()
    trailing = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("#").strip())
            continue
        match = re.match(r"(\w+)\s*:", text)
        if match and line.startswith("    ") and not line.startswith("     "):
            tail = trailing.get(number) if "#" in line else None
            comments[match.group(1)] = " ".join([*above, *([tail] if tail else [])])
        above = []
    return comments


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(sorted({type(a).__name__ for a in args}))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if dataclasses.is_dataclass(hint):
        return hint.__name__
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _allowed(hint: Any) -> str:
    """What a value may be, from the annotation: choices, a range or a form."""
    from anomed.config import Bounds, Pattern

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    found: list[str] = []
    if origin is typing.Annotated:
        found.append(_allowed(args[0]))
        for extra in args[1:]:
            if isinstance(extra, Bounds):
                found.append(extra.describe())
            elif isinstance(extra, Pattern):
                found.append(f"like {extra.example}")
    elif origin is typing.Literal:
        found.append(", ".join(f"`{a!r}`" for a in args))
    elif origin is not None and origin not in (list, dict, tuple):
        found.extend(_allowed(a) for a in args if a is not type(None))
    return "; ".join(f for f in found if f)


def _value(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def field_rows(cls: type, prefix: str = "") -> Iterator[dict[str, str]]:
    """One row per leaf field of a dataclass tree (nested dataclasses expanded, dotted)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    comments: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            with contextlib.suppress(OSError, TypeError):
                comments.update(field_comments(base))
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from field_rows(hint, f"{prefix}{f.name}.")
            continue
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        yield {
            "name": prefix + f.name,
            "type": _type_name(hint),
            "default": _value(default),
            "allowed": _allowed(hint),
            "about": comments.get(f.name, ""),
        }


def run_config_table() -> str:
    from anomed.config import RunConfig

    head = "| field | type | default | allowed | what it is |\n|---|---|---|---|---|\n"
    body = "".join(
        f"| `{r['name']}` | {_cell(r['type'])} | {_cell(r['default'])} | "
        f"{_cell(r['allowed'])} | {_cell(r['about'])} |\n"
        for r in field_rows(RunConfig)
    )
    return head + body


def method_config_table(name: str) -> str:
    """A method's switches: default (the `anomed` preset), what `reference` and `paper` set,
    and the run-level defaults the presets choose."""
    from anomed.methods import METHODS

    cls = METHODS.get(name)
    presets = {p: cls.presets.get(p, {}) for p in ("reference", "paper")}
    head = (
        f"`method_args` of `{name}` (`{cls.config_class.__name__}`); a blank preset cell means "
        "the preset keeps the default.\n\n"
        "| field | type | default (`anomed`) | `reference` | `paper` | allowed | what it is |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in field_rows(cls.config_class):
        cells = [_value(presets[p][r["name"]]) if r["name"] in presets[p] else "" for p in presets]
        rows.append(
            f"| `{r['name']}` | {_cell(r['type'])} | {_cell(r['default'])} | "
            f"{_cell(cells[0])} | {_cell(cells[1])} | {_cell(r['allowed'])} | "
            f"{_cell(r['about'])} |\n"
        )
    run_level = {p: {k: v for k, v in t.items() if "." in k} for p, t in presets.items()}
    extra = "".join(
        f"\nThe `{p}` preset also sets run-level defaults: "
        + ", ".join(f"`{k}={v!r}`" for k, v in table.items())
        + " (used where the run leaves them unset).\n"
        for p, table in run_level.items()
        if table
    )
    return head + "".join(rows) + extra


# ------------------------------------------------------------------ published figures


def published_table(name: str) -> str:
    """The figures `anomed.published` holds for a method, as the paper gives them (%)."""
    from anomed.published import PUBLISHED

    entry = PUBLISHED.get(name)
    if entry is None:
        return f"anomed holds no published figures for `{name}`.\n"
    out = [f"Source: {entry['citation']}; backbone {entry['backbone']}. AUROC in %.\n"]
    rows = []
    for protocol, datasets in entry["results"].items():
        for dataset, metrics in datasets.items():
            std = entry.get("std", {}).get(dataset)
            image = metrics.get("image_auroc")
            shown = "" if image is None else f"{image}" + ("" if std is None else f" ± {std}")
            pixel = metrics.get("pixel_auroc", "")
            rows.append(f"| {protocol} | {dataset} | {shown} | {pixel} |\n")
    out.append("\n| protocol | dataset | image AUROC | pixel AUROC |\n|---|---|---:|---:|\n")
    out.extend(rows)
    for metric, table in entry.get("cross_sequence", {}).items():
        views = list(next(iter(table.values())))
        out.append(f"\nCross-sequence ({metric}, trained on T1 axial):\n\n")
        out.append("| sequence | " + " | ".join(views) + " |\n|---|" + "---:|" * len(views) + "\n")
        for seq, row in table.items():
            out.append(f"| {seq} | " + " | ".join(str(row[v]) for v in views) + " |\n")
    return "".join(out)


# ------------------------------------------------------------------ included files


def include(relative: str) -> str:
    """A repository Markdown file with its headings moved one level down (under the page's)."""
    path = (ROOT / relative).resolve()
    if ROOT not in path.parents or not path.is_file():
        raise FileNotFoundError(f"{relative}: no such file in the repository")
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        lines.append("#" + line if line.startswith("#") and not fenced else line)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the hook


def render(kind: str, arg: str | None) -> str:
    if kind == "cli":
        return cli_reference()
    if kind == "run-config":
        return run_config_table()
    if kind == "method-config" and arg:
        return method_config_table(arg)
    if kind == "published" and arg:
        return published_table(arg)
    if kind == "include" and arg:
        return include(arg)
    raise ValueError(f"unknown generated block {kind!r} {arg!r}")


def expand(markdown: str) -> str:
    """The page with every marker line replaced by its generated text."""
    return MARKER.sub(lambda m: render(m.group(1), m.group(2)), markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # noqa: ARG001
    return expand(markdown)
