"""The review page labels its colour bar in the format the reports use: static/app.js's
`scaleFormat` gives the same text as anomed.viz.scale.scale_format, run in headless Chromium."""

from __future__ import annotations

import json

import pytest
from test_serve_browser import browser  # noqa: F401 - the fixture

from anomed.serve.app import STATIC
from anomed.viz.scale import scale_format

pytestmark = pytest.mark.slow

SCALES = [(0.0, 1.0), (0.6512, 0.7734), (-3.0, 250.0), (2e-6, 3e-5), (2e5, 3e6), (-0.2, 0.2)]


def test_review_page_colour_bar_format_matches_the_reports(browser, tmp_path):  # noqa: F811
    page = tmp_path / "scale.html"
    page.write_text(f'<!doctype html><script src="{(STATIC / "app.js").as_uri()}"></script>')
    browser.get(page.as_uri())
    cases = [(lo, hi, [lo, hi, lo + (hi - lo) * 0.37, -1e-9]) for lo, hi in SCALES]
    got = browser.execute_script(
        "return arguments[0].map(([lo, hi, xs]) => xs.map(scaleFormat(lo, hi)));", cases
    )
    want = [[scale_format(lo, hi)(x) for x in xs] for lo, hi, xs in cases]
    assert got == want, json.dumps({"js": got, "python": want})
