"""Metrics from predictions only, and seed summaries. (Predicting a run's splits is
:mod:`core.train.evaluation`; parameter counts and latency are :mod:`core.models.profile`.)

Predictions follow one convention: ``scores`` is a float (N, K) array of probabilities
(softmax over K classes for "binary", "multi-class" and "ordinal", so binary has K = 2; one
sigmoid per label for "multi-label") and ``labels`` is (N,) class indices, or (N, K) 0/1 for
multi-label. Everything returned is plain Python (floats, ints, lists, dicts, None), ready
for ``json.dumps(..., allow_nan=False)`` into ``eval.json``; an undefined number is None.

ACC and AUC follow ``medmnist.Evaluator`` exactly (its getACC/getAUC are called whenever
they are defined): multi-label ACC and AUC are averaged over labels with a 0.5 threshold,
binary AUC uses the positive-class score, multi-class and ordinal AUC is the mean
one-vs-rest AUC.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (cohen_kappa_score, confusion_matrix, log_loss, multilabel_confusion_matrix,
                             precision_recall_fscore_support, roc_auc_score, roc_curve)

from core.calibration import reliability_diagram
from core.errors import StudioError
from core.uncertainty import per_class_uncertainty, predictive_entropy
from core.vocab import TASK_TO_MEDMNIST as _MEDMNIST_TASK
from core.vocab import TASKS

# Each ROC curve is cut to at most this many points so that eval.json stays small; 200
# points are more than a plot can show and the AUC is computed from the full curve.
MAX_ROC_POINTS = 200

# The multi-label decision threshold, as in medmnist's getACC.
THRESHOLD = 0.5

# Rows of softmax scores may be off 1 by float32 rounding, never by this much.
_ROW_SUM_TOL = 1e-3

DEFAULT_SEED_KEYS = ("acc", "auc", "f1_macro", "kappa", "log_loss", "ece")


def _num(x) -> float | None:
    """A float for JSON, or None where the number is undefined (NaN or infinite)."""
    x = float(x)
    return x if math.isfinite(x) else None


def check_predictions(scores, labels, task: str, class_names: Sequence[str] | None = None):
    """Validate predictions and bring them to the studio's convention.

    Args:
        scores: (N, K) probabilities (numpy array, torch tensor or nested lists).
        labels: (N,) or (N, 1) class indices; (N, K) 0/1 for multi-label.
        task: "binary", "multi-class", "multi-label" or "ordinal".
        class_names: K names; defaults to "0", "1", ...

    Returns:
        (scores as float64 (N, K), labels as int64 (N,) or (N, K), class names as a list of str).
    """
    if task not in TASKS:
        raise StudioError(f"Unknown task '{task}'; use one of {', '.join(TASKS)}.")
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    try:
        p = np.asarray(scores, dtype=np.float64)
        y_raw = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StudioError(f"Scores and labels must be numeric arrays ({exc}).") from exc
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise StudioError(
            f"Scores must be a non-empty 2-D array of shape (samples, classes), got shape {p.shape}."
        )
    n, k = p.shape
    if not np.all(np.isfinite(p)):
        raise StudioError("Scores contain NaN or infinite values; check the model's outputs.")
    if p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise StudioError(
            f"Scores must be probabilities in [0, 1], found values from {p.min():.3g} to {p.max():.3g}; "
            "apply softmax (or sigmoid for multi-label) to the logits first."
        )
    p = np.clip(p, 0.0, 1.0)

    if task == "multi-label":
        if y_raw.shape != p.shape:
            raise StudioError(
                f"Multi-label labels must have the scores' shape {p.shape} (one 0/1 column per label), "
                f"got {y_raw.shape}."
            )
        if not np.all((y_raw == 0) | (y_raw == 1)):
            raise StudioError("Multi-label labels must be 0 or 1.")
    else:
        if y_raw.ndim == 2 and y_raw.shape[1] == 1:
            y_raw = y_raw[:, 0]  # medmnist stores single labels as (N, 1)
        if y_raw.ndim != 1 or y_raw.shape[0] != n:
            raise StudioError(
                f"Got {n} rows of scores but labels of shape {y_raw.shape}; pass one class index per sample."
            )
        if task == "binary" and k != 2:
            raise StudioError(f"A binary task needs two score columns (softmax over both classes), got {k}.")
        if k < 2:
            raise StudioError(f"A {task} task needs at least two classes, got {k} score column.")
        if not np.all(np.isfinite(y_raw)) or not np.all(y_raw == np.round(y_raw)):
            raise StudioError("Labels must be whole class indices.")
        if y_raw.min() < 0 or y_raw.max() >= k:
            raise StudioError(
                f"Labels must be class indices from 0 to {k - 1}, found {int(y_raw.min())} to {int(y_raw.max())}."
            )
        sums = p.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1)))
        if abs(sums[worst] - 1) > _ROW_SUM_TOL:
            raise StudioError(
                f"Each row of scores must sum to 1 for a {task} task (softmax outputs); "
                f"row {worst} sums to {sums[worst]:.4g}."
            )
    y = y_raw.astype(np.int64)

    if class_names is None:
        names = [str(i) for i in range(k)]
    else:
        names = [str(c) for c in class_names]
        if len(names) != k:
            raise StudioError(f"Got {k} score columns but {len(names)} class names; pass one name per class.")
    return p, y, names


def _downsample(fpr: np.ndarray, tpr: np.ndarray, max_points: int = MAX_ROC_POINTS):
    """Evenly spaced points of a ROC curve, always keeping both ends."""
    if len(fpr) <= max_points:
        return fpr, tpr
    idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
    return fpr[idx], tpr[idx]


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """One-vs-rest AUC, or None when the labels hold only one of the two outcomes."""
    if y.min() == y.max():
        return None
    return _num(roc_auc_score(y, s))


def _log_loss(p: np.ndarray, y: np.ndarray, task: str) -> float:
    # scikit-learn clips to float64's machine epsilon, so a confident wrong answer costs about
    # 36 nats instead of infinity. Multi-label: one binary log loss over all N*K labels.
    with warnings.catch_warnings():
        # float32 softmax rows sum to 1 within ~1e-7, not within sklearn's sqrt(eps) (checked above).
        warnings.filterwarnings("ignore", message=".*do not sum to one")
        if task == "multi-label":
            return float(log_loss(y.ravel(), p.ravel(), labels=[0, 1]))
        return float(log_loss(y, p, labels=list(range(p.shape[1]))))


def _kappa(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int], weights: str | None = None) -> float | None:
    # Kappa is 0/0 when both raters use one and the same class only; sklearn warns and
    # returns NaN there, which we report as None (with a note in the evaluation).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return _num(cohen_kappa_score(y_true, y_pred, labels=labels, weights=weights))


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def evaluate_predictions(scores, labels, task: str, class_names: Sequence[str] | None = None) -> dict:
    """Every metric the studio reports for one set of predictions.

    Args:
        scores: (N, K) probabilities.
        labels: (N,) class indices ((N, 1) is accepted); (N, K) 0/1 for multi-label.
        task: "binary", "multi-class", "multi-label" or "ordinal".
        class_names: K names; defaults to "0", "1", ...

    Returns:
        A JSON-ready dict:
        - "task", "n", "num_classes", "class_names";
        - "acc", "auc": medmnist's ACC and AUC. Where medmnist's AUC is undefined (a class
          with no positive or no negative sample), "auc" is the mean over the classes where
          it is defined, with a note; None if there is none;
        - "log_loss": mean negative log-likelihood of the true class (multi-label: mean binary
          cross-entropy over all N*K label probabilities);
        - "kappa": Cohen's kappa of argmax predictions (multi-label: mean over labels of the
          per-label kappa at the 0.5 threshold); ordinal tasks add "kappa_quadratic";
        - "ece", "reliability": top-label calibration (see core.calibration);
        - "mean_entropy", "mean_normalized_entropy", "per_class_uncertainty": see
          core.uncertainty;
        - "per_class": one-vs-rest {class, precision, recall, f1, support, sensitivity,
          specificity, auc} (multi-label: per label). Precision/recall/F1 are 0 when their
          denominator is 0 (scikit-learn's convention); sensitivity, specificity and AUC are
          None then, because a clinical rate of "0" would mislead;
        - "macro", "weighted": {precision, recall, f1} averaged like scikit-learn's
          classification_report: single-label over the classes present in the labels or the
          predictions, multi-label over all labels; "f1_macro" and "f1_weighted" repeat the F1;
        - "confusion_matrix": K x K counts, rows = true class, columns = predicted class
          (multi-label: one [[TN, FP], [FN, TP]] per label);
        - "roc": per class {class, fpr, tpr, auc}, at most MAX_ROC_POINTS points (empty
          lists when the AUC is undefined);
        - "notes": sentences on anything undefined or left out.
    """
    p, y, names = check_predictions(scores, labels, task, class_names)
    n, k = p.shape
    multi = task == "multi-label"
    notes: list[str] = []

    classes = list(range(k))
    if multi:
        y_bin, pred_bin = y, (p > THRESHOLD).astype(np.int64)
        truth, guess, labels_arg = y, pred_bin, None
    else:
        pred = p.argmax(axis=1)
        y_bin = (y[:, None] == np.arange(k)).astype(np.int64)
        pred_bin = (pred[:, None] == np.arange(k)).astype(np.int64)
        truth, guess, labels_arg = y, pred, classes
    unit, plural = ("label", "labels") if multi else ("class", "classes")

    # One-vs-rest [[TN, FP], [FN, TP]] per class (or label); the clinical rates derive from them.
    per_class_cm = multilabel_confusion_matrix(truth, guess, labels=labels_arg)
    tn, fp, fn, tp = (per_class_cm[:, i, j] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))

    class_auc: list[float | None] = []
    roc: list[dict] = []
    for j in range(k):
        auc_j = _binary_auc(y_bin[:, j], p[:, j])
        class_auc.append(auc_j)
        if auc_j is None:
            has = "no" if y_bin[:, j].sum() == 0 else "every"
            notes.append(
                f"{unit.capitalize()} '{names[j]}': {has} sample has it, so its AUC and ROC curve are undefined (null)."
            )
            roc.append({"class": names[j], "fpr": [], "tpr": [], "auc": None})
            continue
        fpr, tpr, _ = roc_curve(y_bin[:, j], p[:, j])
        fpr, tpr = _downsample(fpr, tpr)
        roc.append({"class": names[j], "fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr], "auc": auc_j})

    # medmnist's functions squeeze their inputs, which breaks on a single sample or a single
    # label, and roc_auc_score raises on an undefined class; we only call them when defined.
    from medmnist.evaluator import getACC, getAUC  # lazy: importing medmnist loads its datasets module

    medmnist_ok = n >= 2 and (not multi or k >= 2)
    y_medmnist = y if multi else y.reshape(-1, 1)
    if medmnist_ok:
        acc = _num(getACC(y_medmnist, p, _MEDMNIST_TASK[task]))
    else:
        acc = float((pred_bin == y_bin).mean()) if multi else float((pred == y).mean())
    defined = [a for a in class_auc if a is not None]
    if medmnist_ok and len(defined) == k:
        auc = _num(getAUC(y_medmnist, p, _MEDMNIST_TASK[task]))
    elif defined:
        auc = float(np.mean(defined))
        if len(defined) < k:
            notes.append(f"AUC is the mean over the {len(defined)} of {k} {plural} where it is defined.")
    else:
        auc = None
        notes.append("AUC is undefined: no class has both positive and negative samples.")

    precision, recall, f1, support = precision_recall_fscore_support(
        truth, guess, labels=labels_arg, average=None, zero_division=0)
    per_class = []
    for j in range(k):
        per_class.append({
            "class": names[j],
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "support": int(support[j]),
            "sensitivity": _ratio(tp[j], tp[j] + fn[j]),
            "specificity": _ratio(tn[j], tn[j] + fp[j]),
            "auc": class_auc[j],
        })

    if multi:
        averaged = list(range(k))
    else:
        # As classification_report: a class neither in the labels nor predicted has no
        # precision or recall to average, so it would only drag the macro mean to 0.
        averaged = [j for j in range(k) if tp[j] + fn[j] + fp[j] > 0]
        if len(averaged) < k:
            left = ", ".join(f"'{names[j]}'" for j in range(k) if j not in averaged)
            notes.append(f"Macro averages leave out {left}: neither in the labels nor predicted.")
    averages = {}
    for average in ("macro", "weighted"):
        scores_avg = precision_recall_fscore_support(truth, guess, labels=averaged, average=average,
                                                     zero_division=0)[:3]
        averages[average] = {m: float(v) for m, v in zip(("precision", "recall", "f1"), scores_avg)}
    macro, weighted = averages["macro"], averages["weighted"]
    if support[averaged].sum() == 0:  # no positive label at all: a support-weighted mean is 0/0
        weighted = {m: None for m in weighted}

    if multi:
        kappas = [_kappa(y[:, j], pred_bin[:, j], [0, 1]) for j in range(k)]
        finite = [v for v in kappas if v is not None]
        kappa = float(np.mean(finite)) if finite else None
        if len(finite) < k:
            notes.append(f"Kappa is the mean over the {len(finite)} of {k} labels where it is defined.")
        confusion = per_class_cm.tolist()
    else:
        kappa = _kappa(y, pred, classes)
        confusion = confusion_matrix(y, pred, labels=classes).tolist()
    if kappa is None:
        notes.append("Cohen's kappa is undefined: labels and predictions use one and the same class only.")

    reliability = reliability_diagram(p, y)
    entropy = predictive_entropy(p, task)
    max_entropy = math.log(2 if multi else k)
    out = {
        "task": task,
        "n": int(n),
        "num_classes": int(k),
        "class_names": names,
        "acc": acc,
        "auc": auc,
        "log_loss": _num(_log_loss(p, y, task)),
        "kappa": kappa,
        "ece": reliability["ece"],
        "mean_entropy": _num(entropy.mean()),
        "mean_normalized_entropy": _num(entropy.mean() / max_entropy),
        "f1_macro": macro["f1"],
        "f1_weighted": weighted["f1"],
        "macro": macro,
        "weighted": weighted,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "roc": roc,
        "reliability": reliability,
        "per_class_uncertainty": per_class_uncertainty(p, y, names, task),
        "notes": notes,
    }
    if task == "ordinal":
        # Ordinal grades (e.g. retinopathy severity) are usually scored with quadratic
        # weights, which count a miss by two grades four times a miss by one.
        out["kappa_quadratic"] = _kappa(y, pred, list(range(k)), weights="quadratic")
    return out


def summarize_seeds(evals: Sequence[dict], keys: Sequence[str] = DEFAULT_SEED_KEYS) -> dict:
    """Mean and standard deviation of metrics over runs repeated with different seeds.

    Args:
        evals: the evaluate_predictions() dicts of the runs (one per seed).
        keys: top-level numeric metrics to summarise.

    Returns:
        {key: {"mean", "std", "n"}}. The std is the sample standard deviation (ddof=1), the
        usual "mean ± std over seeds"; with a single run it is 0.0, not undefined. Runs where
        a metric is None (undefined) are left out of its n; if all are, mean and std are None.
    """
    if not evals:
        raise StudioError("There are no runs to summarise; pass at least one evaluation.")
    out = {}
    for key in keys:
        if not any(key in e for e in evals):
            available = sorted({k for e in evals for k, v in e.items() if isinstance(v, (int, float))})
            raise StudioError(f"No run has a metric named '{key}'; available metrics: {', '.join(available)}.")
        vals = []
        for e in evals:
            v = e.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise StudioError(f"Metric '{key}' is not a number ({v!r}) and cannot be averaged over seeds.")
            if math.isfinite(v):
                vals.append(float(v))
        if not vals:
            out[key] = {"mean": None, "std": None, "n": 0}
            continue
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out[key] = {"mean": float(statistics.fmean(vals)), "std": float(std), "n": len(vals)}
    return out
