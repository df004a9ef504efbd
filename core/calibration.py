"""Calibration: expected calibration error, reliability diagrams and temperature scaling.

A model is calibrated when, among the predictions it makes with confidence c, a fraction c
is right. Temperature scaling (Guo et al., 2017) divides the logits by one scalar T > 0
fitted on the validation split; it changes confidences but never the predicted class.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from core.errors import StudioError
from core.forward import scores_from_logits
from core.vocab import TASKS

# Temperature search range. Below 0.01 or above 100 the fitted value only means the
# validation set is tiny or perfectly separated; clamping keeps the result usable.
T_MIN = 0.01
T_MAX = 100.0


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _confidences(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Flatten predictions into (confidence, hit) pairs for binning.

    Single-label (labels of shape (N,) or (N, 1)): the confidence is the top-class
    probability and the hit is 1 when the top class is the true one (top-label
    calibration). Multi-label (labels with the scores' shape (N, K)): every one of the N*K
    label probabilities is a prediction that the label is present, and its "hit" is the 0/1
    label, so a bin's accuracy is the fraction of present labels among those probabilities.
    """
    p = _to_numpy(scores).astype(np.float64)
    y = _to_numpy(labels)
    if p.ndim != 2:
        raise StudioError(f"Scores must be a 2-D array (samples, classes), got shape {p.shape}.")
    if not np.all(np.isfinite(p)):
        raise StudioError("Scores contain NaN or infinite values; check the model's outputs.")
    if y.shape == p.shape:  # single-label scores have K >= 2 columns, labels one
        return p.reshape(-1), (y.reshape(-1) == 1).astype(np.float64)
    y = y.reshape(-1)
    if y.shape[0] != p.shape[0]:
        raise StudioError(f"Got {p.shape[0]} score rows but {y.shape[0]} labels; pass one label per sample.")
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _bin_stats(conf: np.ndarray, hit: np.ndarray, n_bins: int):
    if n_bins < 1:
        raise StudioError(f"The number of calibration bins must be at least 1, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin b holds edges[b] < c <= edges[b+1] (a confidence of exactly 0 goes to the first bin).
    idx = np.digitize(conf, edges[1:-1], right=True)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=hit, minlength=n_bins)
    return edges, count, conf_sum, hit_sum


def expected_calibration_error(scores, labels, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins.

    ECE = sum over bins of (n_b / n) * |accuracy_b - confidence_b|, where a bin's accuracy
    and confidence are the means of its hits and confidences.

    Args:
        scores: (N, K) probabilities.
        labels: (N,) class indices for single-label tasks (top-label ECE); for multi-label,
            0/1 labels of the scores' shape, and the ECE is taken over all N*K label
            probabilities (each read as "this label is present").
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        The ECE as a float in [0, 1]; 0.0 when there are no predictions.
    """
    conf, hit = _confidences(scores, labels)
    _, count, conf_sum, hit_sum = _bin_stats(conf, hit, n_bins)
    if conf.size == 0:
        return 0.0
    return float(np.abs(hit_sum - conf_sum).sum() / conf.size)


def reliability_diagram(scores, labels, n_bins: int = 15) -> dict:
    """Per-bin confidence and accuracy, ready to plot as a reliability diagram.

    Args:
        scores: (N, K) probabilities.
        labels: as in expected_calibration_error.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        {"n_bins", "edges": n_bins + 1 floats, "centers": n_bins floats,
        "confidence": mean confidence per bin, "accuracy": accuracy per bin (None for an
        empty bin), "count": predictions per bin, "ece": the ECE}; plain Python, JSON-ready.
    """
    conf, hit = _confidences(scores, labels)
    edges, count, conf_sum, hit_sum = _bin_stats(conf, hit, n_bins)
    confidence = [float(c / k) if k else None for c, k in zip(conf_sum, count)]
    accuracy = [float(h / k) if k else None for h, k in zip(hit_sum, count)]
    ece = float(np.abs(hit_sum - conf_sum).sum() / conf.size) if conf.size else 0.0
    return {
        "n_bins": int(n_bins),
        "edges": [float(e) for e in edges],
        "centers": [float(c) for c in (edges[:-1] + edges[1:]) / 2],
        "confidence": confidence,
        "accuracy": accuracy,
        "count": [int(c) for c in count],
        "ece": ece,
    }


def _check_logits(logits, labels, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task not in TASKS:
        raise StudioError(f"Unknown task '{task}'; use one of {', '.join(TASKS)}.")
    z = _to_numpy(logits).astype(np.float64)
    y = _to_numpy(labels)
    if z.ndim != 2 or z.shape[0] == 0:
        raise StudioError(f"Logits must be a non-empty 2-D array (samples, classes), got shape {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise StudioError("Logits contain NaN or infinite values; check the model's outputs.")
    if task == "multi-label":
        if y.shape != z.shape:
            raise StudioError(f"Multi-label labels must have the logits' shape {z.shape}, got {y.shape}.")
        return z, y.astype(np.float64)
    y = y.reshape(-1)
    if y.shape[0] != z.shape[0]:
        raise StudioError(f"Got {z.shape[0]} logit rows but {y.shape[0]} labels; pass one label per sample.")
    if z.shape[1] < 2:
        raise StudioError(f"A {task} task needs one logit per class (at least 2 columns), got {z.shape[1]}.")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise StudioError(
            f"Labels must be class indices from 0 to {z.shape[1] - 1}, found {int(y.min())} to {int(y.max())}."
        )
    return z, y.astype(np.int64)


def _nll(z: np.ndarray, y: np.ndarray, t: float, task: str) -> float:
    """Mean negative log-likelihood of the labels under logits / t."""
    s = z / t
    if task == "multi-label":
        # log(sigmoid(s)) = -log(1 + e^-s), written with logaddexp to stay finite for large |s|.
        return float((y * np.logaddexp(0.0, -s) + (1.0 - y) * np.logaddexp(0.0, s)).mean())
    return float(-log_softmax(s, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits, labels, task: str) -> float:
    """Fit the temperature that minimises the validation NLL.

    The search is over log T, bounded to [log T_MIN, log T_MAX] (Brent's bounded method):
    the NLL is convex in 1/T, so it has a single minimum along log T and a bounded 1-D
    search finds it without a learning rate to tune. One T is shared by all classes (softmax
    tasks) or all labels (multi-label, sigmoid(logit / T)).

    Args:
        logits: (N, K) raw model outputs on the validation split (before softmax/sigmoid).
        labels: (N,) class indices, or (N, K) 0/1 for multi-label.
        task: "binary", "multi-class", "multi-label" or "ordinal".

    Returns:
        T as a float in [T_MIN, T_MAX]; T > 1 softens an over-confident model.
    """
    z, y = _check_logits(logits, labels, task)
    res = minimize_scalar(
        lambda log_t: _nll(z, y, float(np.exp(log_t)), task),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.clip(np.exp(res.x), T_MIN, T_MAX))


def apply_temperature(logits, T: float, task: str) -> np.ndarray:
    """Turn logits into calibrated probabilities.

    Args:
        logits: (N, K) raw model outputs.
        T: temperature from fit_temperature (> 0).
        task: the task name; "multi-label" uses a sigmoid per label, the rest a softmax.

    Returns:
        (N, K) float64 probabilities.
    """
    if task not in TASKS:
        raise StudioError(f"Unknown task '{task}'; use one of {', '.join(TASKS)}.")
    if not (np.isfinite(T) and T > 0):
        raise StudioError(f"The temperature must be a positive number, got {T}.")
    z = _to_numpy(logits).astype(np.float64)
    if z.ndim != 2:
        raise StudioError(f"Logits must be a 2-D array (samples, classes), got shape {z.shape}.")
    return scores_from_logits(z, task, T)


def calibration_report(scores, labels, task: str, logits=None, temperature: float | None = None,
                       n_bins: int = 15) -> dict:
    """Reliability before and after temperature scaling, for one set of saved predictions.

    Args:
        scores: (N, K) probabilities as the model gave them (temperature 1).
        labels: (N,) class indices, or (N, K) 0/1 for multi-label.
        task: the task name.
        logits: the (N, K) logits behind ``scores``; without them (a classical baseline)
            there is no "after".
        temperature: the run's fitted temperature; None or missing logits leave "after" out.
        n_bins: equal-width confidence bins.

    Returns:
        ``{"before": reliability_diagram(scores), "after": reliability_diagram of
        apply_temperature(logits, T) or None, "temperature": T or None}``.
    """
    before = reliability_diagram(scores, labels, n_bins)
    if logits is None or temperature is None:
        return {"before": before, "after": None, "temperature": None}
    t = float(temperature)
    after = reliability_diagram(apply_temperature(logits, t, task), labels, n_bins)
    return {"before": before, "after": after, "temperature": t}
