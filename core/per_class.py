"""Per-class rates a clinician reads: sensitivity, specificity, precision, recall and accuracy.

Each class is scored one against the rest, from the confusion matrix that eval.json already
holds (rows = true class, columns = answer; for multi-label one ``[[TN, FP], [FN, TP]]`` per
label), so the numbers are the same wherever they are shown: the Compare page, the reports
and the model card. Precision and recall follow scikit-learn's convention (0 when their
denominator is 0); sensitivity and specificity are None then, because a clinical rate of
"0" for a class that has no cases would mislead.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core.errors import StudioError

#: The columns of :func:`per_class_metrics`, in the order tables show them.
COLUMNS = ("class", "support", "sensitivity", "specificity", "precision", "recall", "f1", "accuracy")

#: What each column means, for captions and report footnotes.
MEANINGS = {
    "sensitivity": "of the images that have the class, the share the model found (true-positive rate)",
    "specificity": "of the images that do not have it, the share the model correctly left out (true-negative rate)",
    "precision": "of the model's answers for the class, the share that were right",
    "recall": "the same as sensitivity, under its machine-learning name",
    "accuracy": "the share of all images on which the model was right about this class, yes or no",
}


def per_class_metrics(confusion: Sequence, class_names: Sequence[str], task: str) -> list[dict[str, Any]]:
    """One-vs-rest rates of every class from a confusion matrix.

    Args:
        confusion: single-label: K x K counts, rows = true class, columns = predicted class;
            multi-label: K matrices ``[[TN, FP], [FN, TP]]``, one per label (eval.json's
            ``confusion_matrix`` either way).
        class_names: the K class (label) names.
        task: the task name ("binary", "multi-class", "ordinal" or "multi-label").

    Returns:
        One dict per class with the keys of :data:`COLUMNS` (plus ``tp``, ``fp``, ``fn``,
        ``tn``): ``support`` is the number of images of the class; the rates are floats in
        [0, 1], sensitivity and specificity None when undefined.

    Raises:
        StudioError: the matrix does not fit the class names.
    """
    names = [str(c) for c in class_names]
    k = len(names)
    m = np.asarray(confusion, dtype=np.int64)
    if task == "multi-label":
        if m.shape != (k, 2, 2):
            raise StudioError(f"a multi-label confusion matrix must be {k} x 2 x 2, not {m.shape}; evaluate the run again.")
        tn, fp, fn, tp = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    else:
        if m.shape != (k, k):
            raise StudioError(f"the confusion matrix must be {k} x {k} for {k} classes, not {m.shape}; "
                              "evaluate the run again.")
        tp = np.diag(m)
        fn = m.sum(axis=1) - tp
        fp = m.sum(axis=0) - tp
        tn = m.sum() - tp - fn - fp
    rows = []
    for j, name in enumerate(names):
        a, b, c, d = int(tp[j]), int(fp[j]), int(fn[j]), int(tn[j])
        precision = a / (a + b) if a + b else 0.0
        recall = a / (a + c) if a + c else 0.0
        total = a + b + c + d
        rows.append({
            "class": name, "support": a + c,
            "sensitivity": a / (a + c) if a + c else None,
            "specificity": d / (d + b) if d + b else None,
            "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "accuracy": (a + d) / total if total else None,
            "tp": a, "fp": b, "fn": c, "tn": d,
        })
    return rows


def per_class_from_eval(split_eval: dict[str, Any] | None) -> list[dict[str, Any]]:
    """:func:`per_class_metrics` of one split of eval.json; [] when it has no confusion matrix.

    Args:
        split_eval: e.g. ``run.eval()["test"]``.

    Returns:
        The per-class rows, or [] for a split that was not evaluated.
    """
    e = split_eval or {}
    if not e.get("confusion_matrix") or not e.get("class_names"):
        return []
    return per_class_metrics(e["confusion_matrix"], e["class_names"], e.get("task") or "multi-class")
