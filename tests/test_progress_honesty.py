"""Honest progress and results in core: the time left under a time limit, why a run stopped,
the quick classical baseline, and the near-chance / worse-than-baseline judgement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.evaluate import evaluate_predictions
from core.honesty import chance_accuracy, judge
from core.train.progress import fmt_minutes, stop_record, time_left, why_stopped


# ---------------------------------------------------------------------------- time left
def test_time_left_without_a_limit_is_the_epoch_estimate():
    # 30 % of 10 epochs done in 60 s: 20 s an epoch, 7 epochs to go
    assert time_left(0.3, 0.0, 60.0, 10) == pytest.approx(140.0)
    assert time_left(0.0, 0.0, 5.0, 10) is None, "nothing done yet: no estimate"


def test_time_left_respects_the_time_limit():
    """The issue's case: 66 s into a 2-minute run whose epochs alone would take ~4 min."""
    # 10 epochs of 24 s; 66 s in = 2.75 epochs done
    left = time_left(0.275, 0.0, 66.0, 10, budget_s=120.0, spent_s=66.0)
    by_epochs = time_left(0.275, 0.0, 66.0, 10)
    assert by_epochs == pytest.approx(174.0)
    # epoch 3 ends at 72 s; epochs 4 and 5 fit (96, 120 <= 122.4); 120 + 24 > 122.4: it stops at 120 s
    assert left == pytest.approx(120.0 - 66.0)
    assert left < 120.0 - 66.0 + 1e-9, "never more than the budget left once the current epoch ends"


def test_time_left_finishes_the_current_epoch_even_past_the_limit():
    # 50 s epochs, budget 60 s, 55 s in (1.1 epochs done): epoch 2 still ends at 100 s
    assert time_left(0.11, 0.0, 55.0, 10, budget_s=60.0, spent_s=55.0) == pytest.approx(45.0)


def test_time_left_after_a_resume_counts_only_this_process_and_the_spent_budget():
    # resumed at 50 %; 10 % more done in 30 s (30 s an epoch); 40 s spent before the resume
    left = time_left(0.6, 0.5, 30.0, 10, budget_s=200.0, spent_s=70.0)
    # epoch 6 just ended at 70 s; 100, 130, 160, 190 fit under 204: 4 more epochs
    assert left == pytest.approx(120.0)


# ---------------------------------------------------------------------------- why it stopped
@pytest.mark.parametrize("record, text", [
    (stop_record("completed", 6, 10, "time_limit", max_minutes=2.0, best_epoch=6),
     "Stopped at epoch 6 of 10: time limit of 2 min."),
    (stop_record("completed", 8, 30, "early_stopping", patience=5, monitor="val_auc", best_epoch=3),
     "Stopped at epoch 8 of 30: early stopping, validation AUC had not improved for 5 epochs. "
     "The weights of epoch 3, the best one, are kept."),
    (stop_record("cancelled", 2, 10, "cancelled", best_epoch=2), "Cancelled after epoch 2 of 10."),
    (stop_record("completed", 10, 10, None, best_epoch=10), "Ran all 10 epochs."),
    (stop_record("completed", 10, 10, "time_limit", max_minutes=1.0, best_epoch=9),
     "Ran all 10 epochs. The weights of epoch 9, the best one, are kept."),
])
def test_why_a_run_stopped_in_words(record, text):
    assert why_stopped({"status": "completed", "stop": record}) == text


def test_why_stopped_for_runs_recorded_before_the_stop_record():
    assert why_stopped({"status": "completed", "epochs": 10, "epochs_done": 6,
                        "stop_reason": "time budget of 2.0 minutes reached"}) == \
        "Stopped at epoch 6 of 10: the time limit."
    assert why_stopped({"status": "completed", "epochs": 3, "epochs_done": 3}) == "Ran all 3 epochs."
    assert why_stopped({"status": "failed"}) is None
    assert fmt_minutes(0.5) == "30 s" and fmt_minutes(2) == "2 min" and fmt_minutes(90) == "1 h 30 min"


def test_a_time_limited_run_records_its_stop_and_time_left(tmp_path, monkeypatch):
    """A real (tiny) run with a time limit that ends it after its first epoch."""
    from core.runs import RunStore
    from core.runs.worker import train_in_this_process as run_training  # records status and times
    from core.train import build_params, make_config
    from core.train import callbacks as cb
    from helpers_runs import write_dataset_folder

    data = write_dataset_folder(tmp_path / "squares", {"train": 32, "val": 8, "test": 8})
    clock = {"t": 1000.0}

    def fake_monotonic():  # every call is a second later: each epoch "takes" many seconds
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(cb.time, "monotonic", fake_monotonic)
    cfg = make_config(str(data), "medvcnn", "default", image_size=28, epochs=50, batch_size=16, max_minutes=0.5,
                      device="cpu", augment="none", tta=False)
    store = RunStore(tmp_path / "runs")
    run = store.create_run(build_params(cfg), name="limited")
    run_training(run, store)
    meta = run.meta()
    assert meta["status"] == "completed"
    assert meta["stop"]["kind"] == "time_limit" and meta["stop"]["limit_minutes"] == 0.5
    assert meta["epochs_done"] < 50
    assert why_stopped(meta).startswith(f"Stopped at epoch {meta['epochs_done']} of 50: time limit of 30 s.")
    baseline = run.eval()["baseline"]
    assert baseline["model"] == "random_forest" and baseline["n_train"] == 32 and baseline["image_side"] == 14
    assert 0.0 <= baseline["test"]["acc"] <= 1.0


# ---------------------------------------------------------------------------- the baseline
def test_quick_baseline_is_cheap_deterministic_and_sees_the_signal():
    from core.baseline import quick_baseline
    from core.data.dataset import ImageDataset as Dataset
    from helpers_runs import square_images

    splits = {s: square_images(n, seed=k) for k, (s, n) in enumerate({"train": 300, "val": 40, "test": 200}.items())}
    data = Dataset(name="squares", source="folder", images={s: v[0] for s, v in splits.items()},
                   labels={s: v[1] for s, v in splits.items()}, task="binary", class_names=["absent", "present"])
    a, b = quick_baseline(data, seed=3), quick_baseline(data, seed=3)
    assert a["test"] == b["test"], "same data and seed, same scores"
    assert a["test"]["acc"] > 0.75, "a bright square is easy for a forest"
    assert a["n_train"] == 300 and a["n_test"] == 200 and a["seconds"] < 30


# ---------------------------------------------------------------------------- the judgement
def _eval(pred_share_positive: float, n: int = 200, positive: float = 0.27, seed: int = 0) -> dict:
    """Binary predictions: ``positive`` share of true positives; the model says positive for
    ``pred_share_positive`` of images, at random (it learned nothing)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive).astype(int)
    p1 = np.where(rng.random(n) < pred_share_positive, 0.7, 0.3) + rng.uniform(-0.01, 0.01, n)
    return evaluate_predictions(np.stack([1 - p1, p1], 1), y, "binary", ["benign", "malignant"])


def test_a_model_answering_one_class_is_called_near_chance():
    test = _eval(0.02)
    level, answer = chance_accuracy(test)
    assert answer == "benign" and level == pytest.approx(1 - sum(test["confusion_matrix"][1]) / 200)
    v = judge(test)
    assert set(v.kinds) >= {"near_chance_acc", "near_chance_auc", "one_class"}
    assert "always answering “benign”" in v.problems[0]
    assert any("It answers “benign” for" in p for p in v.problems)
    assert any("Weight rare classes more" in a for a in v.advice)
    assert v.short() == "near chance"


def test_a_good_model_gets_no_warning():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    scores = np.full((300, 3), 0.1)
    scores[np.arange(300), y] = 0.8
    v = judge(evaluate_predictions(scores, y, "multi-class", ["a", "b", "c"]),
              baseline={"description": "random forest on shrunken pixels", "seconds": 2.0,
                        "test": {"acc": 0.70, "auc": 0.80}})
    assert v.ok and v.problems == [] and v.advice == [] and v.short() == ""


def test_worse_than_the_baseline_says_both_scores_and_what_to_try():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 400)
    scores = rng.dirichlet(np.ones(4), 400)
    right = rng.random(400) < 0.43
    scores[right, y[right]] += 2.0  # ACC about 0.5: above chance (0.25 + margin), below the forest
    scores /= scores.sum(1, keepdims=True)
    test = evaluate_predictions(scores, y, "multi-class", list("abcd"))
    baseline = {"description": "random forest on shrunken pixels", "seconds": 2.4, "test": {"acc": 0.68, "auc": 0.99}}
    v = judge(test, baseline, stop={"kind": "time_limit"})
    assert v.kinds == ["below_baseline"]
    assert f"(this run: {test['acc']:.3f})" in v.problems[0] and "accuracy 0.680" in v.problems[0]
    assert "fitted in 2 s" in v.problems[0]
    assert v.advice[0].startswith("Give it more time")
    assert judge(test, baseline, classical=True).kinds == [], "a classical run is not judged against itself"
    default_tip = "Try the recommended “Fast default” recipe, or a lower learning rate if the curves jump around."
    assert default_tip in judge(test, baseline, recipe="paper").advice
    already = judge(test, baseline, recipe="default").advice
    assert default_tip not in already and "Try a lower learning rate (Advanced settings) if the curves jump around." \
        in already, "a run that used the default recipe is not told to try it"


def test_near_chance_auc_and_multilabel_chance_level():
    test = evaluate_predictions(np.tile([[0.2, 0.9]], (100, 1)) + np.random.default_rng(0).uniform(0, 0.01, (100, 2)),
                                np.stack([np.arange(100) % 10 == 0, np.arange(100) % 2 == 0], 1).astype(int),
                                "multi-label", ["x", "y"])
    level, answer = chance_accuracy(test)
    assert answer is None and level == pytest.approx((0.9 + 0.5) / 2)
    assert "near_chance_auc" in judge(test).kinds
    assert judge(None).ok and judge({}).ok


def test_torch_tensors_of_the_split_are_left_untouched_by_the_baseline():
    from core.baseline import _features

    x = torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8)
    before = x.clone()
    feats = _features(x, np.arange(5))
    assert feats.shape == (5, 3 * 14 * 14) and torch.equal(x, before)
    assert feats[0, 0] == pytest.approx(x[0, 0, :2, :2].float().mean().item() / 255, abs=1e-6)
