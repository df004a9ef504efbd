"""A real browser launches Auto from the Experiments page: a ``streamlit run`` server, Chromium
driven by Playwright (skipped as tests/test_browser.py is, without either), a 16-image generated
folder, two minutes of budget and at most two search trials, then Auto's final runs and
ensemble (the page counts at most 7 runs). The page shows the trials' leaderboard and, once the search ends, the
best run (one of its runs, chosen on validation) with its link to Classify.

The budget counts from the click. On the busy 2-core machine the driver's start (importing
torch, timing the candidate models) once took 65 s and a trial's worker 56 s to its first
step, so half a minute, then a minute and a half, left no trial time to finish; two minutes
did (measured: 1 trial, 2 min 48 s from the click to the end, grace included).

Screenshots of the builder and of the Experiments page go to ``$STUDIO_SHOTS`` (default
``/tmp/shots``) for a person to look at.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers_runs import write_dataset_folder
from tests.test_browser import (
    CHROMIUM, CHROMIUM_ARGS, _full_page, _no_exception, expect, fill_number, pytestmark, studio_server, sync_playwright,
)

REPO = Path(__file__).resolve().parent.parent
__all__ = ["pytestmark"]  # the same skip rules as the walkthrough


def _stop_drivers(runs: Path) -> None:
    """Stop experiment drivers the server started (their pids are in experiment.json)."""
    import json

    for path in runs.glob("experiments/*/experiment.json"):
        try:
            exp = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = (exp.get("driver") or {}).get("pid")
        if exp.get("status") == "running" and isinstance(pid, int):
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "data"
    write_dataset_folder(data / "uploads" / "someone" / "squares-0123abcd", {"train": 16, "val": 8, "test": 8})
    with studio_server(tmp_path, data, tmp_path / "runs", before_stop=_stop_drivers) as info:
        yield info


def test_auto_launched_from_the_page_shows_its_leaderboard(server):
    from core.experiments import ExperimentBook, get_experiment, leaderboard
    from core.runs import RunStore

    shots = Path(os.environ.get("STUDIO_SHOTS", "/tmp/shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(90_000)
            expect.set_options(timeout=90_000)

            page.goto(f"{server['url']}/experiments")
            expect(page.get_by_text("Auto: the best model in a time budget")).to_be_visible()
            fill_number(page, "Minutes", "2", page.get_by_text("2 min", exact=True))
            fill_number(page, "At most this many trials (0 = as many as fit)", "2",
                        page.get_by_text("at most 7", exact=True))  # 2 trials, 4 final runs, the ensemble
            _no_exception(page)
            _full_page(page, shots / "experiments-builder.png")

            page.get_by_role("button", name="Launch the experiment").click()
            expect(page.get_by_text("Launched Auto on squares (2 min)")).to_be_visible()  # no import hash
            expect(page.get_by_text("Leaderboard", exact=True).first).to_be_visible()
            # The live view redraws itself until the search ends, then once more for good.
            expect(page.get_by_text("The best run:").first).to_be_visible(timeout=240_000)
            expect(page.get_by_text("Use the best run on Classify")).to_be_visible()
            _no_exception(page)
            _full_page(page, shots / "experiments-page.png")
        finally:
            browser.close()

    store = RunStore(server["runs"])
    [row] = ExperimentBook(store).list()
    exp = get_experiment(store, row["exp_id"])
    assert exp.kind == "auto" and exp.status == "completed", (exp.status, exp.error)
    board = leaderboard(store, exp)
    assert 1 <= len(board) <= 7 and exp.notes["best_run"] == board[0]["run_id"]
    assert set(exp.members) == {r["run_id"] for r in board}
    log = server["log"].read_text()
    assert "Traceback" not in log, log[-3000:]
