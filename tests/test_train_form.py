"""The Train form survives a refresh and a trip to another page, and the Start button is
not held back by timing training steps (issue 15, item 12)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import RunStore
from helpers_runs import make_run
from test_pages import _stop_job_runner, button, link_data, no_failure, texts  # noqa: F401 - shared fixture

APP = str(Path(__file__).resolve().parent.parent / "studio" / "app.py")
FAST = (0.01, 0.0005)  # (fixed, per image) seconds of a training step


@pytest.fixture
def data(tmp_path, monkeypatch, medmnist_dir):
    from studio import time_estimate, ui

    monkeypatch.setenv("STUDIO_DATA_DIR", str(link_data(medmnist_dir, tmp_path / "data")))
    monkeypatch.setattr(ui, "measure_train_step", lambda *a, **k: FAST)
    time_estimate.timer().clear()


def train_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query or {})
    at.run()
    at.switch_page("../pages/train.py").run()
    return at


def number(at: AppTest, label: str):
    return next(n for n in at.number_input if n.label == label)


def select(at: AppTest, label: str):
    return next(s for s in at.selectbox if s.label == label)


def fill(at: AppTest) -> None:
    select(at, "Architecture").set_value("resnet18")
    at.run()
    number(at, "Epochs").set_value(7)
    number(at, "Learning rate").set_value(0.0005)
    at.text_input(key="train_name").set_value("first try")
    at.run()


def test_the_form_is_in_the_url_so_a_refresh_keeps_it(data):
    at = train_page()
    fill(at)
    no_failure(at)
    url = dict(at.query_params)
    assert url["model"] == ["resnet18"] or url["model"] == "resnet18"
    flat = {k: v[0] if isinstance(v, list) else v for k, v in url.items()}
    assert flat["epochs"] == "7" and flat["name"] == "first try" and flat["lr"] == "0.0005"
    assert "batch_size" not in flat, "only what differs from the recipe"
    assert flat["dataset"] == "breastmnist"

    again = train_page(flat)  # a refresh: a new session with the same URL
    no_failure(again)
    assert select(again, "Architecture").value == "resnet18"
    assert number(again, "Epochs").value == 7 and number(again, "Learning rate").value == pytest.approx(5e-4)
    assert again.text_input(key="train_name").value == "first try"


def test_a_trip_to_another_page_keeps_the_form(data):
    at = train_page()
    fill(at)
    at.switch_page("../pages/compare.py").run()
    no_failure(at)
    at.switch_page("../pages/train.py").run()
    no_failure(at)
    assert select(at, "Architecture").value == "resnet18"
    assert number(at, "Epochs").value == 7 and at.text_input(key="train_name").value == "first try"


def test_a_new_recipe_sets_its_own_values(data):
    at = train_page()
    number(at, "Epochs").set_value(7).run()
    next(r for r in at.radio if r.label == "Training recipe").set_value("medmnist").run()
    no_failure(at)
    assert number(at, "Epochs").value == 100, "the benchmark recipe's 100 epochs, not the old 7"


def test_hostile_url_values_are_dropped(data):
    at = train_page({"epochs": "1e9", "lr": "nan", "dataset": "/etc/passwd", "model": "<script>",
                     "optimizer": "rmsprop; rm -rf", "seed": "3.5", "name": "x" * 500})
    no_failure(at)
    assert number(at, "Epochs").value == 30 and number(at, "Learning rate").value == pytest.approx(3e-3)
    assert select(at, "Dataset").value == "breastmnist" and select(at, "Architecture").value == "medvcnn"
    assert select(at, "Optimiser").value == "adamw" and number(at, "Random seed").value == 0
    assert len(at.text_input(key="train_name").value) == 200


def test_start_is_not_held_back_by_the_step_timing(data, monkeypatch):
    from studio import time_estimate, ui

    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(30)
        return FAST

    monkeypatch.setattr(ui, "measure_train_step", slow)
    time_estimate.timer().clear()
    t0 = time.monotonic()
    at = train_page()
    waited = time.monotonic() - t0
    no_failure(at)
    assert button(at, "Start training") is not None
    assert "Time per epoch:** being measured..." in texts(at.markdown)
    assert "Timing a few training steps in the background; you can start training meanwhile." in texts(at.caption)
    assert waited < 25, "the page did not wait for the timing"
    release.set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(j.done() for j in time_estimate.timer().jobs.values()):
        time.sleep(0.1)
    at.run()
    no_failure(at)
    card = texts(at.markdown)
    assert "Time per epoch:** about" in card or "Time per epoch:** under 1 s" in card
    assert "Measured with a few training steps" in texts(at.caption)


def test_estimate_from_the_last_similar_run(tmp_path, monkeypatch):
    from studio.time_estimate import from_last_run

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    run = make_run(root, "medvcnn", steps=2)
    store = RunStore(root)
    store.rename(run.id, "yesterday's run")
    store.update_meta(run.id, train_seconds=30.0, epochs_done=3, n_train=256, device="cpu",
                      batch_plan={"batch_size": 32})
    found = from_last_run("medvcnn", 28, 32, "cpu", 512)
    assert found.epoch_seconds == pytest.approx(30.0 / 3 * 512 / 256)
    assert "yesterday's run" in found.source and "256 images" in found.source
    assert from_last_run("medvcnn", 28, 64, "cpu", 512) is None, "another batch size is not a yardstick"
    assert from_last_run("medvcnn", 64, 32, "cpu", 512) is None and from_last_run("resnet18", 28, 32, "cpu", 512) is None
    assert from_last_run("medvcnn", 28, 32, "cuda", 512) is None


@pytest.mark.parametrize("native", [True, False])
def test_the_page_says_when_training_computes_in_bf16(data, monkeypatch, native):
    from core.train import device as device_mod

    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: native)
    at = train_page()
    no_failure(at)
    said = [c.value for c in at.caption if c.value.startswith("Computes in")]
    if native:
        assert said == ["Computes in bf16 (mixed precision): this processor does it natively, so it trains "
                        "faster with the same accuracy."]
    else:
        assert said == []


def test_the_page_says_the_default_may_train_on_turns(data):
    from studio.recipe_choices import TURNS_CAPTION

    at = train_page()
    no_failure(at)
    assert [c.value for c in at.caption if c.value == TURNS_CAPTION] == [TURNS_CAPTION]
    assert "no up and down" not in TURNS_CAPTION and "upside down" in TURNS_CAPTION
