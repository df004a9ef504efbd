"""Uncertainty of predictions: entropy and confidence levels in plain words (Monte-Carlo
dropout, which needs the model, is :func:`core.inference.mc_dropout_predict`).

Scores follow the studio's convention: float (N, K) probabilities, softmax over the K classes
for "binary", "multi-class" and "ordinal" tasks, one sigmoid per label for "multi-label".
Entropies use the natural log (nats).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import entr

from core.errors import StudioError
from core.vocab import TASKS

# Thresholds of confidence_level(). "High" needs both a dominant class and little mass
# spread over the others; "low" needs only one warning sign, because a person should be told
# to double-check whenever the top class is weak or the probability is spread out.
# With two classes the normalised entropy is a function of the top probability alone and
# is the stricter rule: "high" starts at about 95.8% and "low" is below about 85.4%
# (a 1-in-5 chance of being wrong is worth a second look in a clinic).
HIGH_MIN_PROB = 0.9  # "high": top probability at least this ...
HIGH_MAX_ENTROPY = 0.25  # ... and normalised entropy at most this
LOW_MAX_PROB = 0.6  # "low": top probability below this ...
LOW_MIN_ENTROPY = 0.6  # ... or normalised entropy above this; everything else is "moderate"

def confidence_rules() -> str:
    """The confidence levels' rules in plain words (Markdown), from the thresholds above.

    The Classify page shows this text, so what it says cannot drift from what
    :func:`confidence_level` does.

    Returns:
        A short Markdown list.
    """
    return (
        f"- **High**: the top class gets at least {HIGH_MIN_PROB:.0%} **and** the normalised entropy is at most "
        f"{HIGH_MAX_ENTROPY:g} (the rest of the probability is not spread over the other classes).\n"
        f"- **Low**: the top class gets less than {LOW_MAX_PROB:.0%} **or** the normalised entropy is above "
        f"{LOW_MIN_ENTROPY:g}: check this case yourself.\n"
        "- **Moderate**: everything in between.\n\n"
        "The normalised entropy is the predictive entropy -sum p log p divided by its largest possible value "
        "(log of the number of classes): 0 when all the probability is on one class, 1 when it is spread evenly. "
        "With two classes it is the stricter rule: high needs about 96 % and anything under about 85 % is low. "
        "For multi-label models each label is a yes/no call and the least certain label sets the level."
    )


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise StudioError(f"Unknown task '{task}'; use one of {', '.join(TASKS)}.")


def _as_scores(scores) -> np.ndarray:
    """Scores as a finite float64 (N, K) array, or a StudioError."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise StudioError(
            f"Scores must be a 2-D array of shape (samples, classes), got shape {arr.shape}; "
            "pass one row of probabilities per sample."
        )
    if not np.all(np.isfinite(arr)):
        raise StudioError("Scores contain NaN or infinite values; check the model's outputs.")
    if arr.size and (arr.min() < -1e-6 or arr.max() > 1 + 1e-6):
        raise StudioError(
            "Scores must be probabilities in [0, 1]; apply softmax (or sigmoid for multi-label) to the logits first."
        )
    # Rounding can leave a probability a hair outside [0, 1], where the entropy is undefined.
    return np.clip(arr, 0.0, 1.0)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    # entr(x) = -x log x with entr(0) = 0, so certain labels give exactly 0, not NaN.
    return entr(p) + entr(1.0 - p)


def predictive_entropy(scores, task: str) -> np.ndarray:
    """Entropy of each prediction, in nats.

    Args:
        scores: (N, K) probabilities (softmax rows, or per-label sigmoids for multi-label).
        task: "binary", "multi-class", "multi-label" or "ordinal".

    Returns:
        (N,) float64 array. Single-label tasks: Shannon entropy -sum_k p_k log p_k, from 0
        (one-hot) to log K (uniform). Multi-label: the mean over the K labels of each label's
        binary entropy, so it ranges from 0 to log 2 whatever the number of labels (labels
        are separate yes/no questions, not one distribution).
    """
    _check_task(task)
    p = _as_scores(scores)
    if task == "multi-label":
        return _binary_entropy(p).mean(axis=1)
    return entr(p).sum(axis=1)


def normalized_entropy(scores, task: str) -> np.ndarray:
    """Predictive entropy divided by its maximum, so that 0 is certain and 1 is uniform.

    Args:
        scores: (N, K) probabilities.
        task: the task name (see predictive_entropy).

    Returns:
        (N,) float64 array in [0, 1]: entropy / log K for single-label tasks, mean binary
        entropy / log 2 for multi-label. With K == 1 (no uncertainty possible) it is 0.
    """
    h = predictive_entropy(scores, task)
    k = 2 if task == "multi-label" else np.asarray(scores).shape[1]
    if k < 2:
        return np.zeros_like(h)
    return np.clip(h / np.log(k), 0.0, 1.0)


def confidence_level(prob_max: float, entropy_norm: float) -> str:
    """Put one prediction into a plain-words confidence band.

    Rules (module constants): "low" if prob_max < LOW_MAX_PROB (0.6) or
    entropy_norm > LOW_MIN_ENTROPY (0.6); otherwise "high" if prob_max >= HIGH_MIN_PROB (0.9)
    and entropy_norm <= HIGH_MAX_ENTROPY (0.25); otherwise "moderate". "Low" is checked first,
    so a single warning sign is never hidden behind a high top probability.

    Args:
        prob_max: the top class probability (for a multi-label label: max(p, 1 - p)).
        entropy_norm: normalised entropy in [0, 1] (see normalized_entropy).

    Returns:
        "high", "moderate" or "low".
    """
    prob_max = float(prob_max)
    entropy_norm = float(entropy_norm)
    if not (np.isfinite(prob_max) and np.isfinite(entropy_norm)):
        raise StudioError("Confidence needs finite numbers; check the model's outputs for NaN.")
    if prob_max < LOW_MAX_PROB or entropy_norm > LOW_MIN_ENTROPY:
        return "low"
    if prob_max >= HIGH_MIN_PROB and entropy_norm <= HIGH_MAX_ENTROPY:
        return "high"
    return "moderate"


def _pct(p: float) -> str:
    """A probability as a whole percentage that never rounds a near-certainty up to 100%."""
    if 0.995 <= p < 1.0:
        return "over 99%"
    if 0.0 < p < 0.005:
        return "under 1%"
    return f"{p:.0%}"


def describe_confidence(probs: Sequence[float], class_names: Sequence[str], task: str = "multi-class") -> str:
    """One sentence, for a person who does not program, on how sure one prediction is.

    Args:
        probs: the K probabilities of one sample (one row of scores).
        class_names: the K class (or label) names.
        task: the task name; multi-label rows are described label by label.

    Returns:
        A sentence that starts with the confidence level, e.g. "High confidence: the model
        gives 97% to 'malignant' and little to the other classes."
    """
    _check_task(task)
    p = _as_scores(np.asarray(probs, dtype=np.float64).reshape(1, -1))
    names = [str(c) for c in class_names]
    if len(names) != p.shape[1]:
        raise StudioError(f"Got {p.shape[1]} probabilities but {len(names)} class names; pass one name per class.")
    h_norm = float(normalized_entropy(p, task)[0])
    p = p[0]

    if task == "multi-label":
        # Each label is its own yes/no call; the sentence's level follows the least certain label.
        decision = np.maximum(p, 1.0 - p)
        weakest = int(np.argmin(decision))
        level = confidence_level(decision[weakest], h_norm)
        present = [f"'{names[i]}' ({_pct(p[i])})" for i in np.argsort(-p) if p[i] > 0.5]
        found = "finds " + ", ".join(present) if present else "finds none of the labels"
        tail = f"; the least certain call is '{names[weakest]}' at {_pct(p[weakest])}"
        if level == "high":
            tail = " and is clear about every label"
        elif level == "low":
            tail += ", so check this case yourself"
        return f"{level.capitalize()} confidence: the model {found}{tail}."

    order = np.argsort(-p)
    top = int(order[0])
    level = confidence_level(p[top], h_norm)
    if len(names) == 1:
        return f"{level.capitalize()} confidence: the model gives {_pct(p[top])} to '{names[top]}'."
    second = int(order[1])
    if level == "high":
        return (
            f"High confidence: the model gives {_pct(p[top])} to '{names[top]}' "
            "and little to the other classes."
        )
    if level == "moderate":
        return (
            f"Moderate confidence: the model favours '{names[top]}' ({_pct(p[top])}), "
            f"with '{names[second]}' next at {_pct(p[second])}."
        )
    return (
        f"Low confidence: the model is unsure; '{names[top]}' gets only {_pct(p[top])} "
        f"and '{names[second]}' {_pct(p[second])}, so treat this as a hint and check it yourself."
    )


def per_class_uncertainty(scores, labels, class_names: Sequence[str], task: str) -> list[dict]:
    """Uncertainty grouped by true class, as in seed 001 (ARN-CNN, Tables 3 and 4).

    The paper's "normalised probability" of a sample is its largest probability divided by
    the sum of its probabilities (Eq. 9); for softmax rows the sum is 1, so it is simply the
    top probability. The per-class "prediction uncertainty" is the standard deviation of
    that value over the samples of the class (population std, ddof=0, numpy's default),
    and the per-class entropy is the mean predictive entropy (Eq. 11, natural log, as
    scipy.stats.entropy). Samples are grouped by their true class.

    For multi-label tasks a "class" is a label and its samples are those where the label is
    present; since sigmoid outputs do not form one distribution, the normalised probability
    is read as the probability given to that label itself, and the entropy is that label's
    binary entropy.

    Args:
        scores: (N, K) probabilities.
        labels: (N,) class indices, or (N, K) 0/1 for multi-label.
        class_names: the K class (or label) names.
        task: the task name.

    Returns:
        One dict per class, in class order: {"class", "n", "mean_entropy",
        "mean_normalized_entropy", "mean_max_prob", "std_max_prob"}. For a class with no
        samples, n is 0 and the other numbers are None (JSON null).
    """
    _check_task(task)
    p = _as_scores(scores)
    n, k = p.shape
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise StudioError(f"Got {k} score columns but {len(names)} class names; pass one name per class.")
    y = np.asarray(labels)
    if task == "multi-label":
        if y.shape != p.shape:
            raise StudioError(f"Multi-label labels must have the scores' shape {p.shape}, got {y.shape}.")
        members = [y[:, j] == 1 for j in range(k)]
        ent = _binary_entropy(p)  # (N, K): each label's own entropy
        ent_cols = [ent[:, j] for j in range(k)]
        norm_cols = [ent[:, j] / np.log(2.0) for j in range(k)]
        conf_cols = [p[:, j] for j in range(k)]
    else:
        y = y.reshape(-1)
        if y.shape[0] != n:
            raise StudioError(f"Got {n} score rows but {y.shape[0]} labels; pass one label per sample.")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise StudioError(
                f"Labels must be class indices from 0 to {k - 1}, found {int(y.min())} to {int(y.max())}."
            )
        members = [y == j for j in range(k)]
        ent = predictive_entropy(p, task)
        norm = normalized_entropy(p, task)
        sums = p.sum(axis=1)
        conf = np.divide(p.max(axis=1), sums, out=np.zeros(n), where=sums > 0)
        ent_cols, norm_cols, conf_cols = [ent] * k, [norm] * k, [conf] * k

    out = []
    for j in range(k):
        m = members[j]
        count = int(m.sum())
        row = {"class": names[j], "n": count}
        if count == 0:
            row.update(mean_entropy=None, mean_normalized_entropy=None, mean_max_prob=None, std_max_prob=None)
        else:
            row.update(
                mean_entropy=float(ent_cols[j][m].mean()),
                mean_normalized_entropy=float(norm_cols[j][m].mean()),
                mean_max_prob=float(conf_cols[j][m].mean()),
                std_max_prob=float(conf_cols[j][m].std()),
            )
        out.append(row)
    return out
