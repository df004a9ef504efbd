"""One real-browser walk through the studio: a real ``streamlit run`` server and Chromium
driven by Playwright. On Datasets an altered copy of BreastMNIST is refused as the official
file and imported as the person's own dataset, then the official file is imported and stays
selected; Train runs a one-epoch model to the end; Compare lists it with its per-class table
and downloads its report (opened in the browser); Classify labels an uploaded PNG with a
heatmap and downloads the model (ONNX with its model card), which onnxruntime then runs.

A full-page screenshot of every page goes to ``test-artifacts/screenshots/`` (or
``$STUDIO_ARTIFACTS/screenshots/``) for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="the playwright Python package is not installed "
                                                       "(pip install -r requirements-dev.txt)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"streamlit did not report healthy within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop_workers(runs: Path) -> None:
    """Stop training workers the server started for this test (their pids are in the run store)."""
    import json

    for meta_path in runs.glob("*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("status") == "running" and isinstance(meta.get("pid"), int):
            try:
                os.killpg(meta["pid"], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


@contextlib.contextmanager
def studio_server(tmp_path: Path, data: Path, runs: Path, before_stop=None):
    """A ``streamlit run studio/app.py`` server on a free port over ``data`` and ``runs``;
    stopped (its process group, then the workers it started) on the way out, after
    ``before_stop(runs)`` when given."""
    port = _free_port()
    env = {**os.environ, "STUDIO_RUNS_DIR": str(runs), "STUDIO_DATA_DIR": str(data), "STUDIO_DEVICE": "cpu"}
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "studio/app.py", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield {"url": url, "runs": runs, "data": data, "log": log}
    finally:
        if before_stop is not None:
            before_stop(runs)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        _stop_workers(runs)


@pytest.fixture
def server(tmp_path, medmnist_dir):
    data = tmp_path / "data"
    data.mkdir()  # empty: the walk imports BreastMNIST on the Datasets page
    with studio_server(tmp_path, data, tmp_path / "runs") as info:
        yield info


def _shots_dir() -> Path:
    root = Path(os.environ.get("STUDIO_ARTIFACTS", REPO / "test-artifacts"))
    d = root / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


_SETTLED = """() => {
    if (document.querySelector('[data-testid="stElementContainer"][data-stale="true"]')) return false;
    for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
        if (!c.querySelector('.main-svg')) return false;
    for (const i of document.querySelectorAll('[data-testid="stMain"] img'))
        if (!i.complete || i.naturalWidth === 0) return false;
    return true;
}"""


def _settle(page) -> None:
    """Wait until no element is stale, every chart is drawn and every image has loaded."""
    page.wait_for_function(_SETTLED, timeout=60_000, polling=250)
    page.wait_for_timeout(500)
    page.wait_for_function(_SETTLED, timeout=60_000, polling=250)


def _full_page(page, path: Path) -> None:
    """Streamlit scrolls inside its main block, so grow the window to the content first."""
    _settle(page)
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : document.body.scrollHeight; }")
    page.set_viewport_size({"width": 1440, "height": int(min(max(height, 900) + 40, 9000))})
    page.wait_for_timeout(1000)  # let plotly charts redraw at the new size
    _settle(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})


def fill_number(page, label: str, value: str, shows) -> None:
    """Type ``value`` into the number field ``label`` and wait until the page shows
    ``shows`` (a locator). A rerun that lands between the keystrokes and Enter redraws
    the field with its old value, as it would for a person, who types it again: so do we,
    up to three times."""
    field = page.get_by_label(label, exact=True)
    for attempt in range(3):
        field.fill(value)
        field.press("Enter")
        try:
            expect(shows).to_be_visible(timeout=30_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    body = page.inner_text("body")
    assert "Traceback" not in body
    assert "(seed 0" not in body and ", seed 0" not in body, "no internal seed numbers on the page"


def _altered_copy(official: Path, folder: Path) -> Path:
    """BreastMNIST with its training labels swapped, under the official name."""
    folder.mkdir()
    with np.load(official) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["train_labels"] = 1 - arrays["train_labels"]
    np.savez(folder / "breastmnist.npz", **arrays)
    return folder / "breastmnist.npz"


def _check_model_zip(path: Path) -> None:
    """The downloaded zip holds a model onnxruntime runs, and the run's model card."""
    import zipfile

    import onnxruntime as ort

    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["model.onnx", "model_card.md"]
        model, card = zf.read("model.onnx"), zf.read("model_card.md").decode()
    assert card.startswith("# Model card:") and "## Export" in card
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((3, 1, 28, 28), np.float32)})[0]
    assert out.shape == (3, 2) and np.isfinite(out).all()


@pytest.mark.timeout(1500)  # a one-epoch run and every page on a shared 2-core machine take over 10 min
def test_browser_walkthrough(server, tmp_path, medmnist_dir):
    url = server["url"]
    shots = _shots_dir()
    official = medmnist_dir / "breastmnist.npz"
    altered = _altered_copy(official, tmp_path / "altered")
    with np.load(official) as npz:
        png = tmp_path / "ultrasound.png"
        Image.fromarray(npz["test_images"][0]).resize((112, 112)).save(png)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(90_000)
            expect.set_options(timeout=90_000)  # the first page load imports torch on a busy CPU

            # Home
            page.goto(url)
            expect(page.get_by_text("Medical Image Classification Studio")).to_be_visible()
            expect(page.get_by_role("button", name="Train my first model")).to_be_visible()
            _no_exception(page)
            _full_page(page, shots / "home.png")

            # Datasets: an altered BreastMNIST is refused as official, then imported as own data
            page.goto(f"{url}/datasets")
            expect(page.get_by_text("is not in the data directory yet")).to_be_visible()
            npz_input = page.locator(".st-key-medmnist_npz input[type='file']")
            npz_input.set_input_files(str(altered))
            expect(page.get_by_text("does not match the official breastmnist.npz")).to_be_visible()
            page.get_by_role("button", name="Import it as my own dataset").click()
            expect(page.get_by_text("as your own dataset").first).to_be_visible()
            expect(page.get_by_text("Binary: each image is one of two classes").first).to_be_visible()
            _no_exception(page)
            _full_page(page, shots / "datasets-own-npz.png")

            # ... and the official file: imported, MD5 checked, selected and described
            npz_input.set_input_files(str(official))
            expect(page.get_by_text("Imported breastmnist.npz (MD5 checked); it is selected below.")).to_be_visible()
            expect(page.get_by_text("Sample images from the training split").first).to_be_visible()
            assert (server["data"] / "breastmnist.npz").is_file()
            _no_exception(page)
            _full_page(page, shots / "datasets.png")

            # Train: one epoch of MedvCNN, watched to the end
            page.goto(f"{url}/train")
            expect(page.get_by_text("Time per epoch")).to_be_visible()
            page.get_by_text("Advanced settings").click()
            fill_number(page, "Epochs", "1", page.get_by_text("1 epoch:", exact=True))
            # a refresh keeps the form (the settings are in the URL)
            expect(page).to_have_url(re.compile(r"epochs=1"))
            page.reload()
            page.get_by_text("Advanced settings").click()
            expect(page.get_by_label("Epochs", exact=True)).to_have_value("1")
            expect(page.get_by_text("1 epoch:", exact=True)).to_be_visible()
            page.get_by_role("button", name="Start training").click()
            expect(page.get_by_text("Queued 1 run")).to_be_visible()
            expect(page.get_by_text("Finished in")).to_be_visible(timeout=300_000)
            expect(page.get_by_text("Ran its one epoch.")).to_be_visible()  # why it stopped
            _no_exception(page)
            _full_page(page, shots / "train.png")

            # Compare: the run is on the leaderboard and selected for comparison
            page.goto(f"{url}/compare")
            expect(page.get_by_role("heading", name="Scores")).to_be_visible()
            expect(page.get_by_text("ROC curves on the test split")).to_be_visible()
            expect(page.get_by_text("Each class against all the others, on the test split")).to_be_visible()
            page.get_by_role("button", name="Prepare the report of this run").click()
            with page.expect_download() as report_download:
                page.get_by_role("button", name="Download the report (HTML)").click()
            report = tmp_path / "report.html"
            report_download.value.save_as(report)
            expect(page.get_by_role("button", name="Download the report (PDF)")).to_be_visible()
            _no_exception(page)
            _full_page(page, shots / "compare.png")

            # The report opens on its own, offline: every picture inline
            page.goto(report.as_uri())
            expect(page.get_by_role("heading", name="Per class")).to_be_visible()
            expect(page.get_by_role("heading", name="Example explanations")).to_be_visible()
            assert page.locator("img").count() >= 4
            page.screenshot(path=str(shots / "report.png"), full_page=True)

            # Classify: upload the PNG, get a label and a heatmap
            page.goto(f"{url}/classify")
            page.locator("input[type='file']").set_input_files(str(png))
            expect(page.get_by_text("red marks what drove the answer")).to_be_visible()
            label = page.locator("h3").filter(has_text="malignant").or_(page.locator("h3").filter(has_text="benign"))
            expect(label.first).to_be_visible()
            assert page.locator("[data-testid='stImage'] img").count() >= 2
            _no_exception(page)
            _full_page(page, shots / "classify.png")

            # Download the model from the run's card: ONNX with its model card
            page.get_by_text("Download this model (ONNX or TorchScript, with its model card)").click()
            page.get_by_role("button", name="Prepare the model download").click()
            with page.expect_download() as model_download:
                page.get_by_role("button", name="Download the ONNX model and its model card").click()
            zipped = tmp_path / "model.zip"
            model_download.value.save_as(zipped)
            _check_model_zip(zipped)
            expect(page.get_by_text("Checked before saving")).to_be_visible()
            _no_exception(page)
            _full_page(page, shots / "classify-download.png")
        finally:
            browser.close()
    log = server["log"].read_text()
    assert "Traceback" not in log, log[-3000:]
