"""Auto's final runs: which settings they train (the default recipe unless a search trial beat it
on validation by more than the noise of that difference) and how the rest of the budget is
shared between them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.experiments.auto import AutoSearch, final_limit
from core.experiments.ensemble import paired_margin


def _probs(rng, labels, strength):
    """Two-class probabilities that rank the positives higher the larger ``strength`` is."""
    logit = strength * (2 * labels - 1) + rng.normal(0, 1, len(labels))
    p = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p, p], axis=1)


def test_the_budget_left_is_shared_evenly_between_the_finals_owed():
    # 400 s left, two finals owed, each start-up and evaluation 10 s: 195 s each
    assert final_limit(400.0, 0, 2, 10.0) == pytest.approx(195.0)
    assert final_limit(195.0, 1, 2, 10.0) == 195.0  # the last one owed takes what is left
    assert final_limit(120.0, 2, 2, 10.0) == 120.0  # past the owed finals: the rest
    assert final_limit(400.0, 0, 1, 10.0) == 400.0  # demo mode: one final
    assert final_limit(300.0, 0, 3, 10.0) == pytest.approx(280.0 / 3)
    assert final_limit(5.0, 0, 2, 10.0) == 0.0


def test_paired_margin_is_the_score_difference_with_its_bootstrap_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    strong, weak = _probs(rng, labels, 2.0), _probs(rng, labels, 0.7)
    margin, se = paired_margin(strong, weak, labels, "binary", "val_auc")
    assert margin == pytest.approx(roc_auc_score(labels, strong[:, 1]) - roc_auc_score(labels, weak[:, 1]))
    assert 0.2 < margin and 0 < se < margin / 3
    assert paired_margin(strong, weak, labels, "binary", "val_auc") == (margin, se)  # seeded
    assert paired_margin(weak, strong, labels, "binary", "val_auc")[0] == pytest.approx(-margin)
    assert paired_margin(strong, strong, labels, "binary", "val_auc") == (0.0, 0.0)
    acc, _ = paired_margin(strong, weak, labels, "binary", "val_acc")
    assert acc == pytest.approx((strong.argmax(1) == labels).mean() - (weak.argmax(1) == labels).mean())
    assert paired_margin(strong, weak, np.zeros(80, dtype=int), "binary", "val_auc") == (None, 0.0)  # one class


class _Run:
    def __init__(self, preds):
        self._preds = preds

    def predictions(self):
        return self._preds

    def meta(self):
        return {"task": "binary"}


class _Store:
    def __init__(self, runs):
        self.runs = runs

    def get(self, run_id):
        return self.runs[run_id]


def _search(rows_preds):
    search = object.__new__(AutoSearch)  # only the store, the metric and the space are read
    search.store = _Store({run_id: _Run(p) for run_id, p in rows_preds.items()})
    search.metric = "val_auc"
    search.space = {"default": {"arch": "medvcnn@28", "lr": 3e-3}}
    return search


def _row(run_id, number, val_auc, lr, status="completed"):
    return {"run_id": run_id, "status": status, "val_auc": val_auc, "val_acc": 0.8,
            "trial": {"number": number, "params": {"arch": "medvcnn@28", "lr": lr}}}


def test_finals_keep_the_default_unless_a_trial_beats_it_beyond_the_noise():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 78)
    default = _probs(rng, labels, 1.2)
    nudged = default.copy()  # one positive ranked a little higher: a win far inside the noise
    nudged[np.flatnonzero(labels == 1)[0]] = [0.0, 1.0]
    auc = {k: roc_auc_score(labels, p[:, 1]) for k, p in (("default", default), ("nudged", nudged))}
    assert auc["nudged"] > auc["default"]
    val = {"val_labels": labels}
    search = _search({"r0": {**val, "val_scores": default}, "r3": {**val, "val_scores": nudged}})
    rows = [_row("r0", 0, auc["default"], 3e-3), _row("r3", 3, auc["nudged"], 5e-3)]
    values, source, kept = search._finals_settings(rows)
    assert (values, source) == ({"arch": "medvcnn@28", "lr": 3e-3}, 0)
    assert kept["over"] == 3 and kept["margin"] == pytest.approx(auc["nudged"] - auc["default"], abs=1e-6)
    assert 0 < kept["margin"] <= kept["tolerance"]

    # a trial that ranks the validation images much better replaces the default's settings
    strong = _probs(np.random.default_rng(3), labels, 3.0)
    search = _search({"r0": {**val, "val_scores": default}, "r3": {**val, "val_scores": strong}})
    rows[1] = _row("r3", 3, roc_auc_score(labels, strong[:, 1]), 5e-3)
    assert search._finals_settings(rows) == ({"arch": "medvcnn@28", "lr": 5e-3}, 3, None)

    # no completed default to compare with (pruned, or saved no predictions): the best trial
    assert search._finals_settings([_row("r0", 0, None, 3e-3, "cancelled"), rows[1]])[1] == 3
    search.store.runs["r0"] = _Run(None)
    assert search._finals_settings([_row("r0", 0, auc["default"], 3e-3), rows[1]])[1] == 3
    # the default itself best, or nothing completed
    beaten = _row("r3", 3, 0.9, 5e-3)
    assert search._finals_settings([_row("r0", 0, 0.95, 3e-3), beaten]) == ({"arch": "medvcnn@28", "lr": 3e-3}, 0, None)
    assert search._finals_settings([]) == ({"arch": "medvcnn@28", "lr": 3e-3}, None, None)
