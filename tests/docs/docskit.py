"""Shared pieces of the docs tests: the repository's paths, the docs pages' code blocks, the
generated-reference hook (loaded from docs/hooks) and a browser."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

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


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"browser test needs {missing}: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def chromium():
    """A headless Chromium driver that records network requests (performance log)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="anomed-docs-chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-sync", "--window-size=1280,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.profile_dir = profile
    return driver


def close(driver) -> None:
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)
