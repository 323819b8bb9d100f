"""Shared pieces of the docs tests: the repository's paths, the docs pages' code blocks, the
generated-reference hook (loaded from docs/hooks) and a browser."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not-run: (.+\S) -->$")
SLOW = "<!-- slow -->"


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    run: bool  # False: `<!-- not-run: reason -->` right before the fence
    slow: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site (the hooks folder is no page)."""
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def code_blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks with their markers; an unclosed fence is an error."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match.group(1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise AssertionError(f"{page}:{start + 1}: code fence never closed")
        before = lines[start - 1].strip() if start else ""
        blocks.append(
            Block(
                page=page,
                line=start + 1,
                lang=lang,
                code="\n".join(lines[start + 1 : end]) + "\n",
                run=not NOT_RUN.match(before),
                slow=before == SLOW,
            )
        )
        i = end + 1
    return blocks


def runnable(page: Path) -> list[Block]:
    return [b for b in code_blocks(page) if b.run and b.lang in ("bash", "python")]


def load_hook() -> ModuleType:
    """docs/hooks/generated.py, the MkDocs hook that writes the reference pages."""
    spec = importlib.util.spec_from_file_location(
        "anomed_docs_generated", DOCS / "hooks" / "generated.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
