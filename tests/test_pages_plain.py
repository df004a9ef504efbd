"""Honest progress and plain words on the pages (issue 15, items 5, 6 and 13), driven with
AppTest on small fabricated runs:

- 5: the running card's time left names the time limit, the finished card says why the
  run stopped, the sidebar counts queued runs as waiting;
- 6: a run near chance or below the quick baseline says so, with what to try, on its card
  (Train, Home) and on Compare; a good run gets no warning;
- 13: no seed numbers, recipes in plain words (technical text in the tooltip), a classical
  baseline's card does not describe AdamW, no raw None and no server path in the paper
  claims, readable upload names, "grade N" for ordinal classes on Classify and Compare.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from core.evaluate import evaluate_predictions
from core.runs import RunStore
from core.train.recipes import SUMMARIES, get_recipe
from helpers_runs import make_run, square_images, write_dataset_folder
from test_classify_trust import png
from test_pages import _stop_job_runner, link_data, no_failure, open_page, texts  # noqa: F401 - shared fixture

APP = str(Path(__file__).resolve().parent.parent / "studio" / "app.py")
STOP = {"kind": "time_limit", "epoch": 6, "epochs": 10, "best_epoch": 5, "limit_minutes": 2.0}
BASELINE = {"model": "random_forest", "description": "random forest on shrunken pixels", "seconds": 2.0,
            "test": {"acc": 0.8, "auc": 0.85}}


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    """A small image folder the runs say they trained on (Compare explains its test images)."""
    return write_dataset_folder(tmp_path_factory.mktemp("squares") / "squares", {"train": 8, "val": 4, "test": 8})


def one_class_eval(n: int = 100, positives: int = 40) -> dict:
    """A test evaluation of a model that answers "absent" for every image."""
    labels = np.array([1] * positives + [0] * (n - positives))
    scores = np.tile([0.6, 0.4], (n, 1))
    return evaluate_predictions(scores, labels, "binary", ["absent", "present"])


def poor_run(root: Path, name: str = "poor run", dataset: Path | None = None):
    """A completed run that answers one class, stopped by its 2-minute time limit, with a
    quick baseline that did far better."""
    run = make_run(root, "medvcnn", steps=2, seed=3, dataset=str(dataset) if dataset else None)
    store = RunStore(root)
    store.rename(run.id, name)
    test = one_class_eval()
    run.write_eval({"val": test, "test": test, "baseline": BASELINE})
    store.update_meta(run.id, epochs=10, epochs_done=6, stop=STOP, test_acc=test["acc"], test_auc=test["auc"])
    return run


def all_text(at) -> str:
    parts = [texts(at.markdown), texts(at.caption), texts(at.success), texts(at.info), texts(at.warning),
             texts(at.subheader), texts(at.title)]
    parts += [" ".join(map(str, s.options)) for s in at.selectbox]
    parts += [" ".join(map(str, s.options)) for s in at.multiselect]
    parts += [" ".join(map(str, r.options)) for r in at.radio]
    parts += [d.value.to_string() for d in at.dataframe if hasattr(d.value, "to_string")]
    return "\n".join(parts)


def train_page(monkeypatch, tmp_path, medmnist_dir, my_runs=()):
    from streamlit.testing.v1 import AppTest

    from studio import time_estimate, ui

    monkeypatch.setenv("STUDIO_DATA_DIR", str(link_data(medmnist_dir, tmp_path / "data")))
    monkeypatch.setattr(ui, "measure_train_step", lambda *a, **k: (0.01, 0.0005))  # no real timing here
    time_estimate.timer().clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["my_runs"] = list(my_runs)
    at.run()
    at.switch_page("../pages/train.py").run()
    return at


# ---------------------------------------------------------------------------- item 5
def test_progress_and_finished_texts():
    from studio.run_outcome import cancelled_text, finished_text, progress_text

    running = {"epoch": 3, "eta_seconds": 40, "time_limit_minutes": 2}
    assert progress_text(running, 10) == "Epoch 3 of 10 · about 40 s left (time limit 2 min)"
    assert progress_text({"epoch": 0}, 10) == "Epoch 1 of 10 · estimating time left..."
    row = {"test_acc": 0.6, "test_auc": 0.5}
    text = finished_text({"train_seconds": 120, "stop": STOP}, row, classical=False)
    assert text == ("Finished in 2 min 00 s: test accuracy 0.600, test AUC 0.500. Stopped at epoch 6 of 10: "
                    "time limit of 2 min. The weights of epoch 5, the best one, are kept.")
    assert "no epochs" in finished_text({"train_seconds": 3}, row, classical=True)
    assert cancelled_text({"stop": {"kind": "cancelled", "epoch": 2, "epochs": 10}}) == \
        "Cancelled after epoch 2 of 10. Press Resume to continue it."


def test_the_card_says_what_the_turn_check_decided():
    from studio.run_outcome import turns_text

    summary = "the images look the same turned: a simple classifier told turned images from upright ones 67% of the time"
    assert turns_text({"turn_check": {"allows_turns": True, "summary": summary, "skipped": ""}}) == \
        f"Trained on turned and upside-down copies too: {summary}."
    assert turns_text({"turn_check": {"allows_turns": False, "summary": "the images have an up and a down: x",
                                      "skipped": ""}}) == "Trained without turned copies: the images have an up and a down: x."
    assert turns_text({"turn_check": {"allows_turns": False, "summary": "s", "skipped": "multi-label data"}}) is None
    assert turns_text({}) is None and turns_text({"turn_check": "junk"}) is None


def test_queue_line_counts_queued_runs_as_waiting():
    from studio.labels import queue_text

    rows = [{"status": "running"}, {"status": "queued"}, {"status": "queued"}]
    assert queue_text(rows) == "1 running, 2 waiting"
    assert queue_text([{"status": "queued"}]) == "0 running, 1 waiting"
    assert queue_text([]) == ""


def test_sidebar_counts_the_queued_runs(monkeypatch):
    from studio import ui

    real = ui.store()

    class Queue:  # the real store, with two runs waiting and one running in its queue
        def __getattr__(self, name):
            return getattr(real, name)

        def list_runs(self, *args, status=None, **kwargs):
            if status == list(ui.ACTIVE):
                return [{"status": "running"}, {"status": "queued"}, {"status": "queued"}]
            return real.list_runs(*args, status=status, **kwargs)

    monkeypatch.setattr(ui, "store", lambda: Queue())
    at = open_page("datasets")
    assert "**Training now**  \n1 running, 2 waiting" in texts(at.sidebar.markdown)


def test_finished_card_says_why_it_stopped_and_that_it_is_near_chance(tmp_path, monkeypatch, medmnist_dir):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    run = poor_run(root)
    at = train_page(monkeypatch, tmp_path, medmnist_dir, my_runs=[run.id])
    no_failure(at)
    assert "Stopped at epoch 6 of 10: time limit of 2 min." in texts(at.success)
    warning = texts(at.warning)
    assert "near chance level" in warning and "“absent”" in warning  # item 6, on the card
    assert "worse than that simple yardstick" in warning and "accuracy 0.800 (this run: 0.600)" in warning
    assert "What to try:" in warning and "Give it more time: it stopped at its time limit" in warning


# ---------------------------------------------------------------------------- item 6
def test_home_and_compare_warn_about_the_poor_run_only(tmp_path, monkeypatch, squares):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    good = make_run(root, "medvcnn", steps=40, seed=0, dataset=str(squares))
    RunStore(root).rename(good.id, "good run")
    poor_run(root, dataset=squares)
    assert good.eval()["test"]["acc"] > 0.8, "the square task is learnt"
    for page in ("home", "compare"):
        at = open_page(page)
        no_failure(at)
        warning = texts(at.warning)
        assert warning.startswith("**poor run") and "near chance level" in warning, page  # named first
        assert warning.count("What to try:") == 1 and "good run" not in warning, "the good run gets no warning"
        assert "Tick “Weight rare classes more”" in warning, page


# ---------------------------------------------------------------------------- item 13
def test_train_page_speaks_plainly(tmp_path, monkeypatch, medmnist_dir):
    at = train_page(monkeypatch, tmp_path, medmnist_dir)
    no_failure(at)
    shown = all_text(at)
    assert "seed 0" not in shown and "(seed" not in shown, "no internal seed numbers"
    # no raw None (the augmentation choice "None: images are used as they are" is a word, not a value)
    assert not re.search(r"(?<!\w)None(?![:\w])", shown), re.findall(r".{30}(?<!\w)None(?![:\w]).{30}", shown)
    architecture = next(s for s in at.selectbox if s.label == "Architecture")
    assert "medvcnn · MedvCNN" in architecture.options
    recipe = next(c for c in at.caption if c.value == SUMMARIES["default"])
    assert "AdamW" not in recipe.value and "AdamW" in recipe.proto.help, "technical words in the tooltip"
    assert get_recipe("default").description in recipe.proto.help


def test_classical_baseline_card_does_not_describe_adamw(tmp_path, monkeypatch, medmnist_dir):
    at = train_page(monkeypatch, tmp_path, medmnist_dir)
    next(s for s in at.selectbox if s.label == "Architecture").set_value("random_forest").run()
    no_failure(at)
    shown = all_text(at) + texts(at.expander) + " ".join(n.label for n in at.number_input)
    assert "AdamW" not in shown and "one-cycle" not in shown and "Optimiser" not in shown
    assert not at.radio or "Training recipe" not in [r.label for r in at.radio]
    assert "Random forest: many decision trees that vote." in texts(at.markdown)
    assert "no training recipe" in texts(at.caption)


def test_paper_claims_panel_has_readable_names_and_no_none_or_path(tmp_path, monkeypatch):
    from core.runs.store import RunStore as Store

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    upload = write_dataset_folder(tmp_path / "data" / "uploads" / "someone" / "scans-0a1b2c3d",
                                  {"train": 8, "val": 4, "test": 8})
    run = make_run(root, "medvcnn", dataset=str(upload), steps=2, seed=0)
    Store(root).rename(run.id, "on my scans")
    at = open_page("compare")
    no_failure(at)
    claims = next(d.value for d in at.dataframe if "paper claims (ACC)" in getattr(d.value, "columns", []))
    row = claims.iloc[0]
    assert row["dataset"] == "scans (your images)"
    assert row["paper claims (ACC)"] == "-" and row["difference"] == "-"
    assert row["measured here (ACC)"] == f"{run.eval()['test']['acc']:.3f}"
    assert row["source"].startswith("MedvCNN paper, Tables 6 and 7: not reported on scans (your images)")
    everything = all_text(at)
    assert str(tmp_path) not in everything and "uploads/" not in everything, "no server path on the page"
    assert "None" not in claims.to_string() and "(seed" not in everything


def ordinal_run(root: Path, dataset: Path):
    """A run whose checkpoint and evaluation say: ordinal task, classes named "0" and "1"."""
    run = make_run(root, "medvcnn", steps=40, seed=0, dataset=str(dataset))
    path = run.best_checkpoint
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt.update(task="ordinal", class_names=["0", "1"])
    torch.save(ckpt, path)
    ev = json.loads(run.eval_path.read_text())
    for split in ("val", "test"):
        ev[split].update(task="ordinal", class_names=["0", "1"])
        for c, name in zip(ev[split].get("roc") or [], ("0", "1")):
            c["class"] = name
        for c, name in zip(ev[split].get("per_class") or [], ("0", "1")):
            c["class"] = name
    run.write_eval(ev)
    RunStore(root).update_meta(run.id, task="ordinal", class_names=["0", "1"])
    return run


def test_ordinal_grades_are_named_on_classify_and_compare(tmp_path, monkeypatch, squares):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    ordinal_run(root, squares)
    at = open_page("classify")
    no_failure(at)
    assert "classes: grade 0, grade 1" in texts(at.caption)
    images, labels, _ = square_images(4, seed=5)
    at.file_uploader[0].set_value([("eye.png", png(images[0, 0].numpy()), "image/png")]).run()
    no_failure(at)
    answer = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert answer and answer[0] in ("### grade 0", "### grade 1")
    at = open_page("compare")
    no_failure(at)
    assert [o for o in next(s for s in at.selectbox if s.label == "ROC curve of class").options] == \
        ["grade 0", "grade 1"]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heat = next(s for s in specs if s["data"] and s["data"][0].get("type") == "heatmap")
    assert heat["data"][0]["x"] == ["grade 0", "grade 1"] and heat["data"][0]["y"] == ["grade 0", "grade 1"]
    bars = next(s for s in specs if "F1 per class" in str((s["layout"].get("title") or {}).get("text")))
    assert sorted({x for t in bars["data"] for x in t["x"]}) == ["grade 0", "grade 1"]
    table = next(d.value for d in at.dataframe if "Sensitivity" in d.value.columns)  # the per-class rates
    assert sorted(set(table["Class"])) == ["grade 0", "grade 1"]


def test_running_card_says_time_left_within_the_time_limit(tmp_path, monkeypatch, medmnist_dir):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    run = make_run(root, "medvcnn", steps=2, seed=4)
    # as the trainer writes it 66 s into a 2-minute run of 10 epochs (core.train.progress.time_left)
    RunStore(root).update_meta(run.id, status="running", epoch=3, epochs=10, progress=0.3, eta_seconds=54.0,
                               time_limit_minutes=2.0)
    from core.runs.jobs import JobRunner

    # no worker process stands behind this made-up run: keep the job runner from settling it
    monkeypatch.setattr(JobRunner, "recover", lambda self: [])
    monkeypatch.setattr(JobRunner, "poll", lambda self, *a, **k: None)
    at = train_page(monkeypatch, tmp_path, medmnist_dir, my_runs=[run.id])
    no_failure(at)
    bars = [p.proto.text for p in at.get("progress")]
    assert "Epoch 3 of 10 · about 54 s left (time limit 2 min)" in bars, bars
