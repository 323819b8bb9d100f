"""The documentation site builds with `mkdocs build --strict`, asks for nothing outside itself,
and every page renders in headless Chromium with no broken internal link or image.

The site is served from a temporary folder by `python -m http.server` on a free loopback port,
started here and stopped by its PID. In CI a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
from browserkit import chromium, close
from docskit import ROOT

pytestmark = pytest.mark.slow

ASSET_TAGS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "link": "href"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", "mkdocs.yml",
         "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def server(site):
    port = _free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "index.html", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the docs server did not start") from None
            time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class _Assets(html.parser.HTMLParser):
    """The URLs a page loads (scripts, styles, images, frames) and the ids it defines."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if values.get("name") and tag == "a":
            self.ids.add(values["name"])
        if tag in ASSET_TAGS and values.get(ASSET_TAGS[tag]):
            if tag == "link" and (values.get("rel") or "") in ("canonical", "alternate"):
                return
            self.assets.append(values[ASSET_TAGS[tag]])


def _parse(page: Path) -> _Assets:
    parser = _Assets()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "assets" not in p.relative_to(site).parts)


def test_every_nav_page_is_built(site) -> None:
    listed = re.findall(r"([\w/-]+)\.md", (ROOT / "mkdocs.yml").read_text())
    assert len(listed) > 20
    for page in listed:
        assert (site / f"{page}.html").is_file(), f"{page}.md was not built"
    cli = (site / "reference" / "cli.html").read_text()
    assert "anomed data import" in cli and "anomed bench speed" in cli
    assert "train.target_fpr" in (site / "reference" / "config.html").read_text()


def test_site_asks_for_nothing_outside_itself(site) -> None:
    for page in _pages(site):
        for url in _parse(page).assets:
            assert not re.match(r"(https?:)?//", url), f"{page.relative_to(site)} loads {url}"
    for css in site.rglob("*.css"):
        found = re.findall(r"url\((['\"]?)(https?:)?//", css.read_text(errors="replace"))
        assert not found, f"{css.relative_to(site)} loads an outside URL"


def _page_facts(driver) -> dict:
    return driver.execute_script(
        "return {links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),"
        " images: Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete,"
        " i.naturalWidth]),"
        " emptyTables: Array.from(document.querySelectorAll('article table')).filter("
        "t => !t.tBodies.length || !t.tBodies[0].rows.length).length};"
    )


def _check_link(link: str, base: str, site: Path) -> str | None:
    """None when an internal link resolves (its file, and its #anchor on that page)."""
    target, anchor = urldefrag(link)
    path = unquote(urlsplit(target).path).lstrip("/")
    file = site / path
    if file.is_dir():
        file = file / "index.html"
    if not file.is_file():
        return f"{link}: no such file in the site"
    if anchor and file.suffix == ".html" and unquote(anchor) not in _parse(file).ids:
        return f"{link}: no element with id {anchor!r}"
    return None


def test_every_page_renders_with_working_links_and_images(site, server) -> None:
    driver = chromium()
    try:
        broken: list[str] = []
        for page in _pages(site):
            name = page.relative_to(site).as_posix()
            driver.get(server + name)
            deadline = time.monotonic() + 30
            while driver.execute_script("return document.readyState") != "complete":
                assert time.monotonic() < deadline, f"{name} never finished loading"
                time.sleep(0.1)
            facts = _page_facts(driver)
            for src, complete, width in facts["images"]:
                if not (complete and width > 0):
                    broken.append(f"{name}: image {src} did not load")
            if facts["emptyTables"]:
                broken.append(f"{name}: {facts['emptyTables']} table(s) without rows")
            for link in facts["links"]:
                if link.startswith(server):
                    problem = _check_link(link, server, site)
                    if problem:
                        broken.append(f"{name}: {problem}")
        assert not broken, "\n".join(broken)
        outside = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                url = message["params"]["request"]["url"]
                # the browser's own pages (chrome://) are not the site's requests
                if url.startswith(("http:", "https:", "ws:", "wss:")) and not url.startswith(
                    server
                ):
                    outside.append(url)
        assert not outside, f"pages asked for outside URLs: {sorted(set(outside))[:10]}"
    finally:
        close(driver)
