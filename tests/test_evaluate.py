"""Metrics from predictions: medmnist semantics, scikit-learn agreement, hand values, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    cohen_kappa_score,
    confusion_matrix,
    log_loss,
    roc_auc_score,
)
from torch import nn

from core.errors import StudioError
from core.evaluate import (
    MAX_ROC_POINTS,
    evaluate_predictions,
    summarize_seeds,
)
from core.models.profile import count_parameters, measure_latency


def _rows(pred: list[int], k: int, top: float = 0.6) -> np.ndarray:
    """Softmax-like rows that put `top` on the predicted class and share the rest."""
    p = np.full((len(pred), k), (1 - top) / (k - 1))
    p[np.arange(len(pred)), pred] = top
    return p


# ---------------------------------------------------------------- binary

def test_binary_acc_auc_hand_values():
    # Positive-class scores: negatives 0.1, 0.4; positives 0.35, 0.8.
    # AUC = fraction of (positive, negative) pairs ranked right:
    # (0.35>0.1) yes, (0.35>0.4) no, (0.8>0.1) yes, (0.8>0.4) yes -> 3/4.
    # ACC at 0.5: predictions 0, 0, 0, 1 against 0, 0, 1, 1 -> 3/4.
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    scores = np.stack([1 - p1, p1], axis=1)
    labels = np.array([0, 0, 1, 1])
    r = evaluate_predictions(scores, labels, "binary", ["benign", "malignant"])
    assert r["auc"] == pytest.approx(0.75)
    assert r["acc"] == pytest.approx(0.75)
    assert r["auc"] == pytest.approx(roc_auc_score(labels, p1))
    assert r["acc"] == pytest.approx(accuracy_score(labels, p1 > 0.5))
    assert r["per_class"][1]["auc"] == pytest.approx(0.75)
    assert r["confusion_matrix"] == [[2, 0], [1, 1]]
    # Malignant: TP 1, FN 1, FP 0, TN 2.
    mal = r["per_class"][1]
    assert mal["sensitivity"] == pytest.approx(0.5)
    assert mal["specificity"] == pytest.approx(1.0)
    assert mal["support"] == 2


def test_binary_matches_medmnist_on_random_scores():
    rng = np.random.default_rng(1)
    p1 = rng.random(200)
    scores = np.stack([1 - p1, p1], axis=1)
    labels = rng.integers(0, 2, 200)
    r = evaluate_predictions(scores, labels, "binary")
    assert r["auc"] == pytest.approx(getAUC(labels.reshape(-1, 1), scores, "binary-class"))
    assert r["acc"] == pytest.approx(getACC(labels.reshape(-1, 1), scores, "binary-class"))
    assert r["auc"] == pytest.approx(roc_auc_score(labels, p1))


# ---------------------------------------------------------------- multi-class

Y_MC = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PRED_MC = [0, 0, 1, 1, 2, 2, 2, 0]


def test_multiclass_sensitivity_specificity_from_confusion_matrix():
    r = evaluate_predictions(_rows(PRED_MC, 3), Y_MC, "multi-class", ["a", "b", "c"])
    # Rows = true class, columns = predicted.
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    # a: TP 2, FN 1, FP 1 (a true c), TN 8 - 4 = 4.  b: TP 1, FN 1, FP 1, TN 5.
    # c: TP 2, FN 1, FP 1, TN 4.
    expected = [(2 / 3, 4 / 5), (1 / 2, 5 / 6), (2 / 3, 4 / 5)]
    for row, (sens, spec) in zip(r["per_class"], expected):
        assert row["sensitivity"] == pytest.approx(sens)
        assert row["specificity"] == pytest.approx(spec)
    assert r["acc"] == pytest.approx(5 / 8)
    # Every row has top probability 0.6, so the per-class spread of it is 0.
    assert [u["n"] for u in r["per_class_uncertainty"]] == [3, 2, 3]
    assert all(u["std_max_prob"] == pytest.approx(0.0) for u in r["per_class_uncertainty"])


def test_multiclass_against_sklearn_and_medmnist():
    rng = np.random.default_rng(2)
    scores = rng.dirichlet(np.ones(4), size=120)
    labels = rng.integers(0, 4, 120)
    pred = scores.argmax(1)
    r = evaluate_predictions(scores, labels, "multi-class", ["w", "x", "y", "z"])

    assert r["acc"] == pytest.approx(accuracy_score(labels, pred))
    assert r["auc"] == pytest.approx(roc_auc_score(labels, scores, multi_class="ovr", average="macro"))
    assert r["auc"] == pytest.approx(getAUC(labels.reshape(-1, 1), scores, "multi-class"))
    assert r["kappa"] == pytest.approx(cohen_kappa_score(labels, pred))
    assert r["log_loss"] == pytest.approx(log_loss(labels, scores, labels=[0, 1, 2, 3]))
    assert r["confusion_matrix"] == confusion_matrix(labels, pred, labels=[0, 1, 2, 3]).tolist()

    rep = classification_report(labels, pred, output_dict=True, zero_division=0)
    for j, row in enumerate(r["per_class"]):
        assert row["precision"] == pytest.approx(rep[str(j)]["precision"])
        assert row["recall"] == pytest.approx(rep[str(j)]["recall"])
        assert row["f1"] == pytest.approx(rep[str(j)]["f1-score"])
        assert row["support"] == rep[str(j)]["support"]
        assert row["auc"] == pytest.approx(roc_auc_score(labels == j, scores[:, j]))
    for avg, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
        for m, sk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert r[key][m] == pytest.approx(rep[avg][sk])
    assert r["f1_macro"] == pytest.approx(rep["macro avg"]["f1-score"])


def test_ordinal_adds_quadratic_kappa():
    r = evaluate_predictions(_rows(PRED_MC, 3), Y_MC, "ordinal")
    assert r["kappa_quadratic"] == pytest.approx(cohen_kappa_score(Y_MC, PRED_MC, weights="quadratic"))
    assert r["acc"] == pytest.approx(5 / 8)


def test_medmnist_style_column_labels_are_accepted():
    flat = evaluate_predictions(_rows(PRED_MC, 3), Y_MC, "multi-class")
    column = evaluate_predictions(_rows(PRED_MC, 3), Y_MC.reshape(-1, 1), "multi-class")
    assert flat == column


# ---------------------------------------------------------------- multi-label

def test_multilabel_hand_values_and_sklearn():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.2], [0.3, 0.6], [0.6, 0.4], [0.2, 0.7]])
    r = evaluate_predictions(scores, labels, "multi-label", ["effusion", "nodule"])
    # Label 0 at 0.5: predictions 1,0,1,0 -> all right (acc 1); scores separate perfectly -> AUC 1.
    # Label 1: predictions 0,1,0,1 vs 0,1,1,0 -> acc 1/2; positives 0.6, 0.4 vs negatives
    # 0.2, 0.7: (0.6>0.2) (0.6<0.7) (0.4>0.2) (0.4<0.7) -> AUC 2/4.
    assert r["acc"] == pytest.approx((1 + 0.5) / 2)
    assert r["auc"] == pytest.approx((1 + 0.5) / 2)
    assert r["auc"] == pytest.approx(roc_auc_score(labels, scores, average="macro"))
    assert r["auc"] == pytest.approx(getAUC(labels, scores, "multi-label, binary-class"))
    assert r["acc"] == pytest.approx(getACC(labels, scores, "multi-label, binary-class"))
    assert r["acc"] == pytest.approx(np.mean([accuracy_score(labels[:, j], scores[:, j] > 0.5) for j in range(2)]))
    # Per-label [[TN, FP], [FN, TP]].
    assert r["confusion_matrix"] == [[[2, 0], [0, 2]], [[1, 1], [1, 1]]]
    assert r["log_loss"] == pytest.approx(log_loss(labels.ravel(), scores.ravel()))
    kappas = [cohen_kappa_score(labels[:, j], (scores[:, j] > 0.5).astype(int)) for j in range(2)]
    assert r["kappa"] == pytest.approx(np.mean(kappas))
    rep = classification_report(labels, (scores > 0.5).astype(int), output_dict=True, zero_division=0)
    for j, row in enumerate(r["per_class"]):
        assert row["f1"] == pytest.approx(rep[str(j)]["f1-score"])
        assert row["support"] == rep[str(j)]["support"]
    assert r["f1_macro"] == pytest.approx(rep["macro avg"]["f1-score"])
    assert r["per_class"][1]["specificity"] == pytest.approx(0.5)


# ---------------------------------------------------------------- degenerate cases

def test_absent_class_gives_null_auc_and_a_note():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = _rows([0, 1, 1, 1, 0, 0], 3)
    r = evaluate_predictions(scores, labels, "multi-class", ["a", "b", "c"])
    absent = r["per_class"][2]
    assert absent["auc"] is None and absent["sensitivity"] is None and absent["support"] == 0
    assert r["roc"][2] == {"class": "c", "fpr": [], "tpr": [], "auc": None}
    defined = [roc_auc_score(labels == j, scores[:, j]) for j in range(2)]
    assert r["auc"] == pytest.approx(np.mean(defined))
    assert any("'c'" in n for n in r["notes"])
    json.dumps(r, allow_nan=False)


def test_single_class_binary_and_single_sample_do_not_crash():
    scores = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    r = evaluate_predictions(scores, np.zeros(3, dtype=int), "binary")
    assert r["auc"] is None and r["acc"] == pytest.approx(2 / 3)
    json.dumps(r, allow_nan=False)
    one = evaluate_predictions(scores[:1], [0], "multi-class")
    assert one["acc"] == 1.0 and one["auc"] is None and one["kappa"] is None
    json.dumps(one, allow_nan=False)


def test_absent_multilabel_label():
    labels = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.6]])
    r = evaluate_predictions(scores, labels, "multi-label")
    assert r["per_class"][1]["auc"] is None
    assert r["auc"] == pytest.approx(1.0)  # only label 0 is defined
    json.dumps(r, allow_nan=False)


@pytest.mark.parametrize(
    "scores, labels, task, names",
    [
        (np.full((4, 3), 1 / 3), np.zeros(5, dtype=int), "multi-class", None),  # row count
        (np.full((4, 3), 1 / 3), np.zeros(4, dtype=int), "binary", None),  # binary needs K = 2
        (np.full((4, 3), 1 / 3), np.zeros((4, 2), dtype=int), "multi-label", None),  # label shape
        (np.full((4, 3), 1 / 3), np.array([0, 1, 2, 3]), "multi-class", None),  # label out of range
        (np.full((4, 3), 0.5), np.zeros(4, dtype=int), "multi-class", None),  # rows do not sum to 1
        (np.array([[2.0, -1.0], [0.0, 1.0]]), np.array([0, 1]), "binary", None),  # logits, not probs
        (np.full((4, 3), 1 / 3), np.zeros(4, dtype=int), "multi-class", ["a", "b"]),  # names
        (np.full(4, 0.5), np.zeros(4, dtype=int), "binary", None),  # 1-D scores
        (np.full((4, 3), 1 / 3), np.zeros(4, dtype=int), "regression", None),  # task
    ],
)
def test_bad_inputs_raise_studio_error(scores, labels, task, names):
    with pytest.raises(StudioError):
        evaluate_predictions(scores, labels, task, names)


def test_output_is_json_round_trippable_and_roc_is_small():
    rng = np.random.default_rng(3)
    scores = rng.dirichlet(np.ones(3), size=2000)
    labels = rng.integers(0, 3, 2000)
    r = evaluate_predictions(scores, labels, "multi-class")
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    for curve in r["roc"]:
        assert 2 <= len(curve["fpr"]) <= MAX_ROC_POINTS
        assert curve["fpr"][0] == 0.0 and curve["tpr"][0] == 0.0
        assert curve["fpr"][-1] == 1.0 and curve["tpr"][-1] == 1.0
        assert np.all(np.diff(curve["fpr"]) >= 0)
    assert r["n"] == 2000 and r["num_classes"] == 3
    assert 0 <= r["ece"] <= 1 and 0 < r["mean_entropy"] <= math.log(3)


# ---------------------------------------------------------------- seeds, size, speed

def test_summarize_seeds():
    evals = [{"acc": 0.8, "auc": 0.9}, {"acc": 0.9, "auc": None}, {"acc": 1.0, "auc": 0.7}]
    s = summarize_seeds(evals, keys=("acc", "auc"))
    assert s["acc"] == {"mean": pytest.approx(0.9), "std": pytest.approx(0.1), "n": 3}  # ddof=1
    assert s["auc"]["n"] == 2 and s["auc"]["mean"] == pytest.approx(0.8)
    assert s["auc"]["std"] == pytest.approx(math.sqrt(0.02))
    assert summarize_seeds([{"acc": 0.5}], keys=("acc",))["acc"] == {"mean": 0.5, "std": 0.0, "n": 1}
    with pytest.raises(StudioError, match="available metrics: acc, auc"):
        summarize_seeds(evals, keys=("f1_macro",))


def test_summarize_seeds_defaults_work_on_real_evaluations():
    evals = [evaluate_predictions(_rows(PRED_MC, 3, top=t), Y_MC, "multi-class") for t in (0.5, 0.7, 0.9)]
    s = summarize_seeds(evals)
    assert s["acc"] == {"mean": pytest.approx(5 / 8), "std": 0.0, "n": 3}
    assert s["log_loss"]["std"] > 0
    json.dumps(s, allow_nan=False)


def test_count_parameters_counts_trainable_only():
    model = nn.Sequential(nn.Linear(10, 3), nn.Linear(3, 2))  # 33 + 8
    assert count_parameters(model) == 41
    for p in model[0].parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == 8


def test_measure_latency_returns_fixed_keys_and_restores_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 1, 8, 8))
    model.train()
    out = measure_latency(model, (1, 8, 8), repeats=5, warmup=1)
    assert set(out) == {"median_ms", "p95_ms", "batch_size", "repeats", "device"}
    assert 0 < out["median_ms"] <= out["p95_ms"]
    assert out["batch_size"] == 1 and out["repeats"] == 5 and out["device"] == "cpu"
    assert model.training
    with pytest.raises(StudioError):
        measure_latency(model, (), repeats=1)


# ---------------------------------------------------------------------------- a run evaluated again
def test_evaluate_run_with_and_without_test_time_augmentation(tmp_path):
    from core.data import load_dataset
    from core.train.evaluation import evaluate_run
    from core.inference import load_run_model, preprocess
    from core.runs import RunStore
    from helpers_runs import make_run, write_dataset_folder

    folder = write_dataset_folder(tmp_path / "squares")
    run = make_run(tmp_path / "runs", "medvcnn", dataset=str(folder), steps=10)
    lm = load_run_model(run)
    data = load_dataset(str(folder), size=28)
    x = preprocess(lm, data.images["test"])
    with torch.no_grad():
        plain = lm.model(x)
        flipped = 0.5 * (plain + lm.model(torch.flip(x, dims=[3])))
    labels = data.labels["test"].numpy()
    names = list(lm.class_names)

    got = evaluate_run(run)
    assert set(got) == {"val", "test"} and got["test"]["tta"] is False
    want = evaluate_predictions(torch.softmax(plain, 1).numpy(), labels, "binary", names)
    assert got["test"]["n"] == len(labels) == 24
    for key in ("acc", "auc", "log_loss", "ece"):
        assert got["test"][key] == pytest.approx(want[key], abs=1e-6), key

    tta = evaluate_run(run, tta=True, splits=("test",))
    assert set(tta) == {"test"} and tta["test"]["tta"] is True
    want_tta = evaluate_predictions(torch.softmax(flipped, 1).numpy(), labels, "binary", names)
    for key in ("acc", "auc", "log_loss", "ece"):
        assert tta["test"][key] == pytest.approx(want_tta[key], abs=1e-6), key
    assert tta["test"]["log_loss"] != pytest.approx(got["test"]["log_loss"], abs=1e-6)  # the mirror images count

    calibrated = evaluate_run(run, calibrated=True, splits=("test",))  # T = 1.25 in the checkpoint
    want_cal = evaluate_predictions(torch.softmax(plain / 1.25, 1).numpy(), labels, "binary", names)
    assert calibrated["test"]["log_loss"] == pytest.approx(want_cal["log_loss"], abs=1e-6)
    assert calibrated["test"]["acc"] == got["test"]["acc"]
    assert json.loads(run.eval_path.read_text())["test"]["n"] == 96  # eval.json is left alone

    with pytest.raises(StudioError, match="no 'train2' split"):
        evaluate_run(run, splits=("train2",))
    empty = RunStore(tmp_path / "runs").create_run({"model": "medvcnn", "dataset": str(folder), "image_size": 28})
    with pytest.raises(StudioError, match="no best checkpoint"):
        evaluate_run(empty)
