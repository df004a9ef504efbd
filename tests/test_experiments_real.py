"""Auto with real training (issue 11): a 1-minute budget on a generated dataset.

Stated margin: the search ends within its budget plus ``MARGIN_S`` seconds. New trials start
only while the budget leaves room for one (training plus the overhead a trial showed on this
machine), each trial has a time limit that ends its training before the deadline, and nothing
trains more than 30 s (``core.experiments.auto.HARD_S``) past the deadline; the rest of the
margin is the cancelled worker's stop and the driver's last pass on a loaded 2-core machine.
"""

from __future__ import annotations

import time

from core.experiments import ExperimentBook, create_experiment, leaderboard, plan_auto, run_experiment, select_best
from core.runs import JobRunner, RunStore
from tests.helpers_runs import write_dataset_folder

MARGIN_S = 60.0


def test_auto_one_minute_on_generated_data(tmp_path):
    folder = str(write_dataset_folder(tmp_path / "squares", {"train": 48, "val": 16, "test": 16}))
    store = RunStore(tmp_path / "runs")
    exp = create_experiment(store, plan_auto(folder, minutes=1))
    start = time.monotonic()
    done = run_experiment(store, exp.id, JobRunner(store, max_concurrent=1, poll_interval=0.2), poll_s=0.5)
    elapsed = time.monotonic() - start
    assert elapsed <= 60 + MARGIN_S, f"Auto took {elapsed:.0f} s for a 60 s budget"
    assert done.status == "completed"
    exp = ExperimentBook(store).get(exp.id)
    rows = leaderboard(store, exp)
    best = select_best(rows, "val_auc")
    assert best is not None and best["run_id"] in exp.members and exp.notes["best_run"] == best["run_id"]
    first = store.get(exp.members[0]).params()
    assert first["experiment"] == exp.id and first["config"]["recipe"] == "default"
    assert first["config"]["model"] == "medvcnn" and first["config"]["max_minutes"] <= 1.0
    space = exp.plan["space"]
    assert space["data"]["train"] == 48 and space["data"]["channels"] == 1 and space["data"]["classes"] == 2
    assert space["machine"]["device"] == "cpu" and space["arches"][0]["arch"] == "medvcnn@28"
    for row in rows:  # trials are ordinary runs: a checkpoint to classify, export and resume from
        if row["status"] == "completed":
            assert store.get(row["run_id"]).best_checkpoint.exists()
