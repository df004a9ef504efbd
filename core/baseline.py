"""A quick classical yardstick fitted at the end of every network run, on the same splits.

A network that scores below a random forest fitted in a few seconds on shrunken pixels
has not learned what it should (a 2-minute run reached ACC 0.43 where a 2-second forest
reached 0.68); :mod:`core.honesty` compares the two and the pages say so. The forest is kept
cheap on any dataset: at most :data:`MAX_TRAIN` training images, each shrunk to at most
:data:`MAX_SIDE` x :data:`MAX_SIDE` pixels per channel by averaging, and at most
:data:`MAX_TEST` test images. Nothing of it is saved but its scores.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

MAX_TRAIN = 4000  # training images the forest sees; a random sample when there are more
MAX_TEST = 20000  # test images it is scored on; a random sample when there are more
MAX_SIDE = 16  # pixels per side after shrinking (28 px MedMNIST -> 14 px, 224 px -> 16 px)
TREES = 100
CHUNK = 1024  # images shrunk at a time, so 224 px splits never sit in memory as floats
DESCRIPTION = "random forest on shrunken pixels"


def _features(images: Any, index: np.ndarray) -> np.ndarray:
    """Images ``index`` of a split -> (n, features) float32, averaged down to MAX_SIDE px."""
    import torch
    import torch.nn.functional as F

    out = []
    for start in range(0, len(index), CHUNK):
        batch = images[torch.from_numpy(index[start:start + CHUNK])].float() / 255.0
        side = batch.shape[-1]
        target = side // -(-side // MAX_SIDE)  # a whole-number shrink factor: exact averages
        if target < side:
            batch = F.adaptive_avg_pool2d(batch, target)
        out.append(batch.reshape(len(batch), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _sample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))


def _probabilities(forest: Any, x: np.ndarray, task: str, k: int) -> np.ndarray:
    proba = forest.predict_proba(x)
    if task != "multi-label":
        full = np.zeros((len(x), k), np.float32)
        full[:, forest.classes_.astype(int)] = proba  # classes absent from the sample score 0
        return full
    cols = []
    for classes, p in zip(forest.classes_, proba):  # one (n, 1 or 2) array per label
        present = list(classes).index(1) if 1 in classes else None
        cols.append(p[:, present] if present is not None else np.zeros(len(x)))
    return np.stack(cols, axis=1).astype(np.float32)


def quick_baseline(data, seed: int = 0) -> dict[str, Any]:
    """Fit the yardstick forest on the training split and score it on the test split.

    Args:
        data: a :class:`core.data.Dataset` (uint8 images, the run's own splits).
        seed: the run's seed: the same data and seed give the same scores.

    Returns:
        JSON-ready ``{"model", "description", "n_train", "n_test", "image_side",
        "seconds", "test": {"acc", "auc"}}`` (``auc`` None when undefined).
    """
    from sklearn.ensemble import RandomForestClassifier

    from core.evaluate import evaluate_predictions

    t0 = time.monotonic()
    rng = np.random.default_rng(seed)
    train_idx = _sample(len(data.images["train"]), MAX_TRAIN, rng)
    test_idx = _sample(len(data.images["test"]), MAX_TEST, rng)
    x_train = _features(data.images["train"], train_idx)
    y_train = data.labels["train"].numpy()[train_idx]
    forest = RandomForestClassifier(n_estimators=TREES, n_jobs=-1, random_state=seed)
    forest.fit(x_train, y_train)
    k = len(data.class_names)
    x_test = _features(data.images["test"], test_idx)
    scores = _probabilities(forest, x_test, data.task, k)
    y_test = data.labels["test"].numpy()[test_idx]
    test = evaluate_predictions(scores, y_test, data.task, list(data.class_names))
    side = int(round((x_train.shape[1] / data.channels) ** 0.5)) if x_train.size else 0
    return {"model": "random_forest", "description": DESCRIPTION, "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)), "image_side": side, "seconds": round(time.monotonic() - t0, 2),
            "test": {"acc": test["acc"], "auc": test["auc"]}}
