"""README.md is the front door: short, and every link and picture in it resolves (relative
files exist, #anchors name a heading of the target page as GitHub and MkDocs slug it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docskit import ROOT

README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs' toc make it (lower case, punctuation dropped,
    spaces to hyphens)."""
    text = re.sub(r"`|\*|_", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(slug(m.group(1)))
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return LINK.findall(text)


def test_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_readme_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "## Two commands on a fresh machine" in text
    assert ".venv/bin/anomed demo" in text and ".venv/bin/pytest -q" in text


@pytest.mark.parametrize("target", links(README))
def test_readme_link_resolves(target: str) -> None:
    if re.match(r"[a-z]+://|mailto:", target):
        pytest.skip("outside link (not checked offline)")
    path, _, anchor = target.partition("#")
    file = README if not path else (README.parent / path).resolve()
    assert file.exists(), f"README links to {path}, which does not exist"
    assert ROOT in file.parents or file == README, f"{target} leaves the repository"
    if anchor:
        assert file.suffix == ".md", f"{target}: an anchor into a non-Markdown file"
        assert anchor in anchors(file), f"{target}: no heading with that anchor in {path}"


def test_slug_matches_github() -> None:
    assert slug("What its numbers mean, and what they do not") == (
        "what-its-numbers-mean-and-what-they-do-not"
    )
    assert slug("`anomed serve`") == "anomed-serve"
