"""The review page in a real browser (Debian's Chromium, headless, through Selenium) against a
real `anomed serve` process on a tiny trained checkpoint.

Set ANOMED_SCREENSHOT=docs/review-page.png to keep the screenshot the README shows.
In CI (CI=true) a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from browserkit import chromium, close
from servekit import free_port, nifti_bytes

import anomed
from anomed.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(phantom_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "checkpoint"
    args = ["-q", "train", "--data", str(phantom_root), "--k", "2", "--epochs", "1"]
    args += ["--image-size", "112", "--output", str(out), "--set", "train.val_every=1"]
    assert main([*args, "--set", "data.n_val=2"]) == 0
    return out


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """`anomed serve CHECKPOINT` as a user starts it, on a free loopback port."""
    port, data = free_port(), tmp_path_factory.mktemp("serve-data")
    env = {**os.environ, "PYTHONPATH": str(Path(anomed.__file__).parents[1])}
    cmd = [sys.executable, "-m", "anomed.cli", "serve", str(trained), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--data-dir", str(data), "--device", "cpu"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"anomed serve did not start (exit {proc.returncode})")
        time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(downloads, height=800)
    yield driver
    close(driver)


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # element not there yet, stale, ...
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rows(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#worklist tbody tr")


def row_named(driver, text: str):
    return next(r for r in rows(driver) if text in r.text)


def test_curl_like_predict_against_the_cli_server(server, phantom_root):
    image = next((phantom_root / "test" / "abnormal").glob("*.png"))
    r = httpx.post(f"{server}/api/predict", files={"file": (image.name, image.read_bytes())})
    assert r.status_code == 200
    body = r.json()
    assert 0.0 <= body["score"] <= 1.0 and body["decision"] in ("abnormal", "normal")
    bad = httpx.post(f"{server}/api/predict", files={"file": ("x.png", b"text")})
    assert bad.status_code == 415 and bad.json()["error"] == "unsupported_media_type"
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_review_page_end_to_end(server, browser, phantom_root, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains, ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    find = browser.find_element
    image = next((phantom_root / "test" / "normal").glob("*.png"))
    volume = tmp_path / "head.nii.gz"
    volume.write_bytes(nifti_bytes((40, 40, 8)))
    browser.get(server)
    wait_for(lambda: find(By.TAG_NAME, "body").get_attribute("data-ready"), what="page ready")
    before = len(rows(browser))

    # upload an image and a NIfTI volume; both appear in the worklist
    find(By.ID, "upload").send_keys(f"{image}\n{volume}")
    find(By.ID, "upload-button").click()
    wait_for(lambda: len(rows(browser)) == before + 2, what="two new worklist rows")
    assert "2 / 2 done" in find(By.ID, "job-status").text
    scores = [float(r.find_element(By.CLASS_NAME, "score").text) for r in rows(browser)]
    assert scores == sorted(scores, reverse=True)  # sorted by score

    # open the volume: picture, heat layer, slice scroller by keys and wheel, opacity slider
    row_named(browser, "head.nii.gz").click()
    picture = find(By.ID, "picture")
    wait_for(lambda: browser.execute_script("return $('base').naturalWidth > 0"), what="slice")
    assert "8 slices" in row_named(browser, "head.nii.gz").text
    label = find(By.ID, "slice-label").text
    picture.click()
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    wait_for(lambda: find(By.ID, "slice-label").text != label, what="slice change by key")
    label = find(By.ID, "slice-label").text
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(picture), 0, 200).perform()
    wait_for(lambda: find(By.ID, "slice-label").text != label, what="slice change by wheel")
    find(By.ID, "opacity").send_keys(Keys.HOME)
    assert browser.execute_script("return $('heat').style.opacity") == "0"
    find(By.ID, "opacity").send_keys(Keys.END)
    assert browser.execute_script("return $('heat').style.opacity") == "1"
    find(By.ID, "opacity").send_keys(Keys.HOME + Keys.ARROW_RIGHT * 45)
    assert browser.execute_script("return $('heat').style.opacity") == "0.45"

    # the threshold slider re-decides the worklist live
    threshold = find(By.ID, "threshold")
    threshold.send_keys(Keys.END)  # above every score: all normal
    wait_for(lambda: {r.get_attribute("data-decision") for r in rows(browser)} == {"normal"})
    threshold.send_keys(Keys.HOME)  # below every score: all abnormal
    wait_for(lambda: {r.get_attribute("data-decision") for r in rows(browser)} == {"abnormal"})
    find(By.ID, "threshold-reset").click()

    # a verdict with a note, kept across a reload
    row_named(browser, image.name).click()
    wait_for(lambda: find(By.ID, "study-name").text == image.name, what="image opened")
    wait_for(lambda: browser.execute_script("return $('heat').naturalWidth > 0"), what="heat")
    find(By.CSS_SELECTOR, 'input[name="verdict"][value="disagree"]').click()
    find(By.ID, "note").send_keys("reviewed by the browser test")
    find(By.ID, "save-verdict").click()
    wait_for(lambda: "saved" in find(By.ID, "verdict-status").text, what="verdict saved")
    assert "disagree" in row_named(browser, image.name).text
    screenshot = tmp_path / "review-page.png"
    browser.save_screenshot(str(screenshot))
    browser.refresh()
    wait_for(lambda: find(By.TAG_NAME, "body").get_attribute("data-ready"), what="reloaded")
    assert "disagree" in row_named(browser, image.name).text
    assert find(By.ID, "note").get_attribute("value") == "reviewed by the browser test"
    assert find(By.CSS_SELECTOR, 'input[value="disagree"]').is_selected()
    find(By.ID, "filter-reviewed").send_keys("reviewed")
    wait_for(lambda: len(rows(browser)) == 1, what="only the reviewed study")

    # CSV export of scores and verdicts
    find(By.ID, "export").click()
    exported = browser.downloads / "anomed-review.csv"
    wait_for(lambda: exported.is_file() and exported.stat().st_size > 0, what="CSV download")
    table = list(csv.DictReader(exported.open()))
    assert len(table) == before + 2
    mine = next(r for r in table if r["name"] == image.name)
    assert mine["verdict"] == "disagree" and mine["note"] == "reviewed by the browser test"
    assert mine["decision_at_review_threshold"] in ("abnormal", "normal")

    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get("ANOMED_SCREENSHOT")
    if keep:
        save_small_png(screenshot, Path(keep))


def save_small_png(source: Path, target: Path) -> None:
    """The screenshot as a 256-colour PNG (a few tens of kB for the README)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        img.convert("RGB").quantize(256).save(target, optimize=True)
