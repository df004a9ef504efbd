"""``python -m core sweep | seeds | ablation | auto | experiments | experiment``: what they print.

The commands run in this process; their runs are trained by the stand-in trainer
(tests/experiment_worker.py) through the real worker entry point, so the printed scores are
known. Auto's Optuna search over the stand-in's scores checks selection on validation only:
the stand-in's test scores rank the trials the other way round.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.cli import main
from core.experiments import ExperimentBook, leaderboard, list_experiments
from core.runs import LocalProcessExecutor, RunStore
from tests.experiment_worker import scores
from tests.test_experiments import FAKE, folder  # noqa: F401  (fixture)


@pytest.fixture
def fake_executor(monkeypatch):
    import core.runs.jobs as jobs

    monkeypatch.setattr(jobs, "make_executor",
                        lambda name=None, address=None: LocalProcessExecutor(FAKE, env={"EXP_FAKE_EPOCH_S": "0.05"}))


def _best_line(out: str) -> re.Match:
    m = re.search(r"best run (\S+) \(chosen on val auc\): val ACC ([\d.]+) AUC ([\d.]+), test ACC ([\d.]+) AUC ([\d.]+)",
                  out)
    assert m, out
    return m


def test_sweep_command_prints_progress_and_the_best_run(folder, tmp_path, capsys, fake_executor):
    runs = str(tmp_path / "runs")
    code = main(["sweep", "--dataset", folder, "--grid", "model=medvcnn,bloodcnn", "lr=1e-3,3e-3", "epochs=1",
                 "--concurrency", "2", "--runs-dir", runs])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"experiment exp-\S+: sweep on .*squares, 4 runs, 2 at a time", out)
    assert len(re.findall(r"^\[\d/4\] \S+ completed: model=", out, flags=re.M)) == 4
    best = _best_line(out)
    # stand-in scores: bloodcnn lr 0.003 -> val AUC 0.5 + 0.12 + 0.1 = 0.72, test AUC 1.5 - 0.72 = 0.78
    assert (float(best[3]), float(best[5])) == pytest.approx((0.72, 0.78))
    store = RunStore(runs)
    exp = ExperimentBook(store).get(list_experiments(store)[0]["exp_id"])
    assert leaderboard(store, exp)[0]["run_id"] == best[1]

    assert main(["experiments", "--runs-dir", runs]) == 0
    listing = capsys.readouterr().out
    assert exp.id in listing and "completed" in listing and "4/4" in listing
    assert main(["experiment", exp.id, "--runs-dir", runs]) == 0
    board = capsys.readouterr().out.splitlines()
    first = next(line for line in board if line.strip().startswith("1 "))
    assert best[1] in first and "0.7200" in first
    assert _best_line("\n".join(board))[1] == best[1]


def test_sweep_command_refuses_an_unknown_field(folder, tmp_path, capsys):
    code = main(["sweep", "--dataset", folder, "--model", "medvcnn", "--grid", "colour=red",
                 "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "'colour' is not a training setting; sweep any of:" in err and "Traceback" not in err


def test_seeds_and_ablation_commands(folder, tmp_path, capsys, fake_executor):
    runs = str(tmp_path / "runs")
    assert main(["ablation", "--model", "cnn_lstm", "--dataset", folder, "--seeds", "2", "--epochs", "1",
                 "--recipe", "default", "--concurrency", "2", "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "CNN-LSTM vs CNN" in out and "0.3500" in out  # the paper's +0.35 ACC beside the measured
    assert "every one of 2 seeds" in out
    source = _best_line(out)[1]
    assert main(["seeds", source, "--n", "2", "--concurrency", "2", "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    cells = next(line for line in out.splitlines() if line.strip().startswith("val.auc")).split()
    # the source is the best CNN run (bloodcnn, the default recipe's lr); the new seeds are the first two others
    cfg = RunStore(runs).get(source).params()["config"]
    assert (cfg["model"], cfg["lr"]) == ("bloodcnn", 3e-3)
    values = [scores({**cfg, "seed": s})["val"]["auc"] for s in [s for s in range(3) if s != cfg["seed"]][:2]]
    assert cells[3] == "2"
    assert (float(cells[1]), float(cells[2])) == pytest.approx((np.mean(values), np.std(values, ddof=1)), abs=1e-4)


def test_auto_command_selects_on_validation(folder, tmp_path, capsys, fake_executor):
    runs = str(tmp_path / "runs")
    code = main(["auto", "--dataset", folder, "--minutes", "1", "--max-trials", "4", "--concurrency", "2",
                 "--runs-dir", runs])
    out = capsys.readouterr().out
    assert code == 0, out
    store = RunStore(runs)
    exp = ExperimentBook(store).get(list_experiments(store)[0]["exp_id"])
    rows = [r for r in leaderboard(store, exp) if r["status"] == "completed"]
    # up to 4 search trials, then the final runs: the best trial's settings (trial 0's, the
    # default, when the best beat it by less than its noise) for the rest of the budget, again
    # from other initial weights (the same split) while a run fits in what is left
    finals = [store.get(m).params() for m in exp.members if store.get(m).params()["experiment_trial"].get("final")]
    assert 1 <= len(finals) <= 4 and len(exp.members) <= 4 + 4
    trials = [r for r in rows if not r["trial"].get("final")]
    assert 2 <= len(trials) <= 4
    best_trial = max(trials, key=lambda r: (r["val_auc"], -r["trial"]["number"]))
    kept = finals[0]["experiment_trial"].get("default_kept")
    source = next(r for r in trials if r["trial"]["number"] == 0) if kept else best_trial
    if kept:
        assert kept["over"] == best_trial["trial"]["number"] != 0 and kept["margin"] <= kept["tolerance"]
    for k, final in enumerate(finals):
        assert final["experiment_trial"]["from_trial"] == source["trial"]["number"]
        assert final["experiment_trial"]["params"] == source["trial"]["params"]
        assert (final["config"]["seed"], final["config"]["split_seed"]) == (k, 0)
        assert final["config"]["epochs"] == 300 and 0 < final["config"]["max_minutes"] < 1
    best = _best_line(out)
    by_val = max(rows, key=lambda r: r["val_auc"])
    by_test = max(rows, key=lambda r: r["test_auc"])
    assert best[1] == by_val["run_id"] != by_test["run_id"]  # the stand-in's test ranks them the other way
    first = store.get(exp.members[0]).params()
    assert first["experiment_trial"]["number"] == 0
    cfg = first["config"]
    assert (cfg["model"], cfg["recipe"], cfg["lr"], cfg["augment"], cfg["ema"]) == ("medvcnn", "default", 3e-3,
                                                                                   "flipshift", 0.99)
    assert "searched: medvcnn@28" in out
