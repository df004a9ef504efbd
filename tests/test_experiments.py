"""Experiments engine (issue 11): plans, the driver through the job runner, leaderboard,
validation-only selection, seeds summary, ablation table, cancel and delete, demo caps.

Runs here are trained by ``tests/experiment_worker.py`` (the real worker entry point with a
stand-in trainer whose scores are a known function of the settings), so rankings and
averages can be checked exactly and quickly; tests/test_experiments_real.py trains for real.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from core.errors import StudioError
from core.experiments import (
    ExperimentBook, ablation_table, cancel_experiment, create_experiment, delete_experiment,
    estimate_experiment, get_experiment, leaderboard, list_experiments, parse_grid, plan_ablation, plan_seeds,
    plan_sweep, run_experiment, seeds_summary, select_best,
)
from core.runs import JobRunner, LocalProcessExecutor, RunStore
from tests.experiment_worker import scores
from tests.helpers_runs import write_dataset_folder

FAKE = [sys.executable, str(Path(__file__).resolve().parent / "experiment_worker.py")]


@pytest.fixture
def folder(tmp_path):
    return str(write_dataset_folder(tmp_path / "squares", {"train": 16, "val": 8, "test": 8}))


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def runner_for(store, concurrency, epoch_s="0.05"):
    return JobRunner(store, LocalProcessExecutor(FAKE, env={"EXP_FAKE_EPOCH_S": epoch_s}),
                     max_concurrent=concurrency, poll_interval=0.05, cancel_grace=5.0)


def sweep(folder, **kw):
    grid = parse_grid(["model=medvcnn,bloodcnn", "lr=1e-3,3e-3"])
    return plan_sweep(folder, grid, fixed={"epochs": 2}, **kw)


def test_parse_grid_types_and_errors():
    grid = parse_grid(["model=medvcnn,resnet18", "lr=1e-3,3e-3", "epochs=5", "tta=yes,no", "size=28,64"])
    assert grid == {"model": ["medvcnn", "resnet18"], "lr": [0.001, 0.003], "epochs": [5], "tta": [True, False],
                    "image_size": [28, 64]}
    with pytest.raises(StudioError, match="'colour' is not a training setting; sweep any of: .*lr"):
        parse_grid(["colour=red"])
    with pytest.raises(StudioError, match="epochs takes a whole number"):
        parse_grid(["epochs=2.5"])
    with pytest.raises(StudioError, match="is not FIELD=V1,V2"):
        parse_grid(["lr"])


def test_plan_counts_and_validation(folder, store):
    exp = plan_sweep(folder, parse_grid(["model=medvcnn,bloodcnn", "lr=1e-3,3e-3"]), seeds=2, fixed={"epochs": 1})
    assert len(exp.planned_runs) == 8
    assert {(r["config"]["model"], r["config"]["lr"], r["config"]["seed"]) for r in exp.planned_runs} == {
        (m, lr, s) for m in ("medvcnn", "bloodcnn") for lr in (1e-3, 3e-3) for s in (0, 1)}
    drawn = plan_sweep(folder, parse_grid(["lr=1e-3,2e-3,3e-3,4e-3"]), model="medvcnn", random_draws=2)
    assert len(drawn.planned_runs) == 2 and len({r["config"]["lr"] for r in drawn.planned_runs}) == 2
    est = estimate_experiment(store, exp, concurrency=2)
    assert est["runs"] == 8 and est["source"] == "rough" and est["seconds"] > 0
    with pytest.raises(StudioError, match="learning rate must be"):
        plan_sweep(folder, parse_grid(["lr=0,1e-3"]), model="medvcnn")
    with pytest.raises(StudioError, match="unknown model 'nope'"):
        plan_sweep(folder, parse_grid(["model=nope"]))


@pytest.mark.parametrize("concurrency", [1, 2])
def test_sweep_runs_all_and_ranks_by_validation(folder, store, concurrency):
    exp = create_experiment(store, sweep(folder))
    seen_running = []
    done = run_experiment(store, exp.id, runner_for(store, concurrency), poll_s=0.05,
                          progress=lambda s: seen_running.append(s["counts"].get("running", 0)))
    assert done.status == "completed" and len(done.members) == 4
    board = leaderboard(store, done)
    assert [r["status"] for r in board] == ["completed"] * 4
    expected = sorted((scores(store.get(r["run_id"]).params()["config"])["val"]["auc"] for r in board), reverse=True)
    assert [r["val_auc"] for r in board] == pytest.approx(expected)
    assert [r["rank"] for r in board] == [1, 2, 3, 4]
    assert board[0]["settings"] == {"model": "bloodcnn", "lr": 0.003}
    assert max(seen_running) <= concurrency
    if concurrency == 2:
        assert max(seen_running) == 2
    for r in board:  # every member's params.json names the experiment; the index has the column too
        assert store.get(r["run_id"]).params()["experiment"] == exp.id
        assert r["experiment"] == exp.id
    assert done.notes["best_run"] == board[0]["run_id"]
    assert list_experiments(store)[0]["status"] == "completed"


def test_select_best_uses_validation_only():
    rows = [{"run_id": "a", "status": "completed", "val_auc": 0.70, "val_acc": 0.6, "test_auc": 0.99},
            {"run_id": "b", "status": "completed", "val_auc": 0.90, "val_acc": 0.8, "test_auc": 0.50},
            {"run_id": "c", "status": "running", "val_auc": 0.95, "test_auc": 0.99},
            {"run_id": "d", "status": "completed", "val_auc": 0.90, "val_acc": 0.7, "test_auc": 0.99}]
    assert select_best(rows, "val_auc")["run_id"] == "b"  # d ties on AUC, loses on val ACC; test never read
    assert select_best(rows, "val_acc")["run_id"] == "b"
    assert select_best([{"run_id": "x", "status": "failed", "val_auc": 0.9}]) is None


def test_cancel_experiment_cancels_the_rest(folder, store):
    exp = create_experiment(store, sweep(folder))
    runner = runner_for(store, 1, epoch_s="0.5")
    result = {}
    thread = threading.Thread(target=lambda: result.update(exp=run_experiment(store, exp.id, runner, poll_s=0.05)))
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = leaderboard(store, ExperimentBook(store).get(exp.id))
        if any(r["status"] == "running" for r in rows):
            break
        time.sleep(0.05)
    cancelled = cancel_experiment(store, exp.id)
    thread.join(30)
    assert not thread.is_alive()
    assert cancelled and result["exp"].status == "cancelled"
    statuses = [r["status"] for r in leaderboard(store, result["exp"])]
    assert "running" not in statuses and "queued" not in statuses
    assert statuses.count("completed") < 4 and "cancelled" in statuses
    assert get_experiment(store, exp.id).status == "cancelled"


def test_seeds_summary_matches_numpy(folder, store):
    source = store.create_run({"dataset": folder, "model": "medvcnn", "seed": 0, "config": sweep(folder).planned_runs[0]["config"]})
    exp = create_experiment(store, plan_seeds(store, source.id, n=3))
    assert [r["config"]["seed"] for r in exp.planned_runs] == [1, 2, 3]
    run_experiment(store, exp.id, runner_for(store, 2), poll_s=0.05)
    summary = seeds_summary(store, ExperimentBook(store).get(exp.id))
    evals = [store.get(r).eval() for r in ExperimentBook(store).get(exp.id).members]
    for split, key in (("val", "auc"), ("test", "acc"), ("val", "log_loss"), ("test", "macro_f1")):
        values = np.array([e[split]["macro"]["f1"] if key == "macro_f1" else e[split][key] for e in evals])
        s = summary[f"{split}.{key}"]
        assert s["n"] == 3
        assert s["mean"] == pytest.approx(values.mean())
        assert s["std"] == pytest.approx(values.std(ddof=1))
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
        assert (s["low"], s["high"]) == pytest.approx((values.mean() - half, values.mean() + half))


def test_ablation_table_values(folder, store):
    exp = plan_ablation(folder, "cnn_lstm", seeds=2, recipe="default", fixed={"epochs": 1, "lr": 1e-3})
    assert [r["label"] for r in exp.planned_runs] == ["CNN seed=0", "CNN seed=1", "CNN-LSTM seed=0", "CNN-LSTM seed=1"]
    exp = create_experiment(store, exp)
    run_experiment(store, exp.id, runner_for(store, 2), poll_s=0.05)
    table = ablation_table(store, ExperimentBook(store).get(exp.id), metrics=("val_auc", "test_acc"))
    assert [(r["variant"], r["metric"]) for r in table] == [("CNN-LSTM", "val_auc"), ("CNN-LSTM", "test_acc")]
    val, test = table
    # fake scores: bloodcnn (the reference, CNN) gets +0.1 val AUC, so CNN-LSTM is 0.1 lower on each seed
    assert val["n_pairs"] == 2 and val["difference"] == pytest.approx(-0.1)
    assert val["reference_mean"] == pytest.approx(0.5 + 0.04 + 0.1 + 0.005)
    assert val["spread"] == pytest.approx(0.0) and val["beyond_spread"] is True
    assert "every one of 2 seeds" in val["verdict"]
    assert test["difference"] == pytest.approx(0.1)  # test = 1.5 - val, so the sign flips
    assert (test["paper_reference"], test["paper_variant"]) == (0.63, 0.98)
    assert test["paper_difference"] == pytest.approx(0.35) and test["paper_agrees"] is True
    assert val["paper_reference"] is None  # the paper claims accuracy only


def test_paired_t_test_against_scipy():
    from core.experiments.summary import _compare
    from core.experiments.ablations import STUDIES

    pairs = [(0.80, 0.83), (0.82, 0.84), (0.79, 0.85)]
    row = _compare(STUDIES["arn_cnn"], "x", "full", "no attention", "test_acc", pairs, 0.05)
    ref, var = np.array(pairs).T
    assert row["p_value"] == pytest.approx(stats.ttest_rel(var, ref).pvalue)
    assert row["difference"] == pytest.approx((var - ref).mean())
    assert row["spread"] == pytest.approx((var - ref).std(ddof=1))
    assert row["paper_difference"] == pytest.approx(0.967 - 0.996) and row["paper_agrees"] is False
    assert row["beyond_spread"] is (row["p_value"] < 0.05)


def test_delete_experiment_and_demo_caps(folder, store, monkeypatch):
    exp = create_experiment(store, sweep(folder))
    run_experiment(store, exp.id, runner_for(store, 2), poll_s=0.05)
    members = ExperimentBook(store).get(exp.id).members
    assert sorted(delete_experiment(store, exp.id, delete_runs=True)) == sorted(members)
    assert list_experiments(store) == [] and store.list_runs() == []
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_DEMO_EXP_RUNS", "3")
    with pytest.raises(StudioError, match="this plan has 4 runs and this demo allows 3 per experiment"):
        sweep(folder)
    monkeypatch.setenv("STUDIO_DEMO_EXP_RUNS", "8")
    theirs = create_experiment(store, sweep(folder, owner="alice"))
    with pytest.raises(StudioError, match="only your own"):
        cancel_experiment(store, theirs.id, owner="bob")
    with pytest.raises(StudioError, match="only your own"):
        delete_experiment(store, theirs.id, owner="bob")


def test_launch_runs_the_driver_detached_and_cancel_stops_it(folder, store):
    """What the pages do: a driver process of its own, followed through the store, then cancelled."""
    from core.experiments import driver_alive, launch_experiment

    exp = create_experiment(store, plan_sweep(folder, parse_grid(["lr=1e-3,2e-3,3e-3"]), model="medvcnn",
                                              fixed={"epochs": 50}))
    launched = launch_experiment(store, exp.id)
    assert launched.status == "running" and isinstance(launched.driver["pid"], int)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ExperimentBook(store).get(exp.id).members:
        time.sleep(0.2)
    current = get_experiment(store, exp.id)
    assert current.status == "running" and driver_alive(current) and len(current.members) == 1
    with pytest.raises(StudioError, match="running already"):
        launch_experiment(store, exp.id)
    cancel_experiment(store, exp.id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (get_experiment(store, exp.id).status == "running"
                                           or driver_alive(get_experiment(store, exp.id))):
        time.sleep(0.2)  # the driver writes "cancelled", then exits
    final = get_experiment(store, exp.id)
    assert final.status == "cancelled" and not driver_alive(final)
    assert [r["status"] for r in leaderboard(store, final)] == ["cancelled"]
    assert "starting the driver" in (store.root / "experiments" / exp.id / "driver.log").read_text()


def test_best_curve_is_the_running_maximum_of_validation():
    from core.experiments import best_curve

    rows = [{"run_id": "a", "status": "completed", "val_auc": 0.6, "finished": "2026-01-01T00:00:10+00:00"},
            {"run_id": "b", "status": "completed", "val_auc": 0.5, "finished": "2026-01-01T00:00:20+00:00"},
            {"run_id": "c", "status": "cancelled", "val_auc": None, "finished": "2026-01-01T00:00:25+00:00"},
            {"run_id": "d", "status": "completed", "val_auc": 0.8, "finished": "2026-01-01T00:00:30+00:00"}]
    curve = best_curve(rows, "2026-01-01T00:00:00+00:00")
    assert curve == [{"seconds": 10.0, "best": 0.6, "run_id": "a"}, {"seconds": 20.0, "best": 0.6, "run_id": "a"},
                     {"seconds": 30.0, "best": 0.8, "run_id": "d"}]


def test_an_upload_names_its_experiments_by_its_readable_name(tmp_path):
    from core.experiments import plan_auto

    upload = write_dataset_folder(tmp_path / "data" / "uploads" / "visitor" / "organa_folder-1a2b3c4d",
                                  {"train": 16, "val": 8, "test": 8})
    exp = plan_auto(str(upload), 2.0)
    assert exp.name == "Auto on organa_folder (2 min)"
    assert str(tmp_path) not in exp.name
    sweep = plan_sweep(str(upload), parse_grid(["lr=1e-3,3e-3"]), model="medvcnn", fixed={"epochs": 1})
    assert sweep.name == "sweep on organa_folder"


def test_auto_keeps_one_run_of_the_demo_cap_for_its_final_run(monkeypatch):
    from core.experiments.auto import AutoSearch

    search = object.__new__(AutoSearch)  # only the plan is read
    search.plan = {"max_trials": None}
    assert search._max_trials() is None  # no cap: as many trials as fit
    search.plan = {"max_trials": 4}
    assert search._max_trials() == 4  # 4 trials, then the final run
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_DEMO_EXP_RUNS", "3")
    assert search._max_trials() == 2  # 2 trials and the final: the demo's 3 runs
    search.plan = {"max_trials": 1}
    assert search._max_trials() == 1


def test_auto_run_bound_counts_trials_finals_and_the_ensemble():
    from core.experiments.auto import MAX_FINALS, max_runs

    assert max_runs(2, None) == 2 + MAX_FINALS + 1
    assert max_runs(None, None) is None
    assert max_runs(2, 3) == 3 and max_runs(1, 5) == 3 and max_runs(None, 4) == 4
