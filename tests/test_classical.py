"""Classical baselines on flattened pixels (core.models.classical)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import ConfigError, DataError
from core.models import create_classical, list_classical

NAMES = ["decision_tree", "knn", "logreg", "random_forest", "svm"]
# where each class (or label) paints its bright patch: (row, column) of a 4x4 block
PATCHES = [(0, 0), (0, 8), (8, 0), (8, 8)]


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 3, 12, 12) dark noise with a bright 4x4 patch per present class/label."""
    n = len(labels)
    images = rng.integers(0, 60, size=(n, 3, 12, 12), dtype=np.uint8)
    present = labels if labels.ndim == 2 else np.eye(len(PATCHES), dtype=int)[labels]
    for k, (r, c) in enumerate(PATCHES):
        rows = np.flatnonzero(present[:, k])
        images[rows, :, r : r + 4, c : c + 4] = rng.integers(180, 256, size=(len(rows), 3, 4, 4), dtype=np.uint8)
    return images


@pytest.fixture(scope="module")
def single_label():
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 4, 240), rng.integers(0, 4, 120)
    return _images(y_train, rng), y_train, _images(y_test, rng), y_test


@pytest.fixture(scope="module")
def multi_label():
    rng = np.random.default_rng(1)
    y_train, y_test = rng.integers(0, 2, (240, 4)), rng.integers(0, 2, (120, 4))
    return _images(y_train, rng), y_train, _images(y_test, rng), y_test


def test_names():
    assert list_classical() == NAMES
    for name in NAMES:
        clf = create_classical(name)
        assert clf.name == name and clf.description


@pytest.mark.parametrize("name", NAMES)
def test_single_label_accuracy_and_probabilities(name, single_label):
    x_train, y_train, x_test, y_test = single_label
    clf = create_classical(name, seed=0).fit(x_train, y_train)
    proba = clf.predict_proba(x_test)
    assert proba.shape == (120, 4)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert (proba.argmax(axis=1) == y_test).mean() >= 0.9
    assert clf.num_classes == 4 and clf.multilabel is False


@pytest.mark.parametrize("name", NAMES)
def test_multi_label(name, multi_label):
    x_train, y_train, x_test, y_test = multi_label
    clf = create_classical(name, seed=0).fit(x_train, y_train)
    proba = clf.predict_proba(x_test)
    assert proba.shape == (120, 4) and clf.multilabel is True
    assert ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent labels, not one distribution
    # MedMNIST's multi-label ACC: per-label accuracy at threshold 0.5, averaged
    assert ((proba > 0.5) == y_test.astype(bool)).mean() >= 0.9


@pytest.mark.parametrize("name", ["random_forest", "svm", "logreg"])
def test_same_seed_same_model(name, single_label):
    x_train, y_train, x_test, _ = single_label
    a = create_classical(name, seed=3).fit(x_train, y_train).predict_proba(x_test)
    b = create_classical(name, seed=3).fit(x_train, y_train).predict_proba(x_test)
    assert np.array_equal(a, b)


def test_seed_matters_for_the_forest():
    # labels unrelated to the pixels, so the trees' random choices show in the votes
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 256, (100, 1, 6, 6), dtype=np.uint8), rng.integers(0, 3, 100)
    a = create_classical("random_forest", seed=0).fit(x, y).predict_proba(x[:20])
    b = create_classical("random_forest", seed=1).fit(x, y).predict_proba(x[:20])
    assert not np.array_equal(a, b)


def test_tensors_and_medmnist_label_column(single_label):
    x_train, y_train, x_test, _ = single_label
    from_numpy = create_classical("knn").fit(x_train, y_train).predict_proba(x_test)
    # MedMNIST labels come as (N, 1); images may come as torch tensors
    clf = create_classical("knn").fit(torch.from_numpy(x_train), y_train[:, None])
    assert clf.multilabel is False
    assert np.array_equal(clf.predict_proba(torch.from_numpy(x_test)), from_numpy)
    # uint8 pixels are scaled to [0, 1]: the same images as floats in [0, 1] give the same answer
    assert np.allclose(clf.predict_proba(x_test.astype(np.float32) / 255.0), from_numpy)


def test_class_missing_from_training_gets_zero(single_label):
    x_train, y_train, x_test, _ = single_label
    keep = y_train != 2
    clf = create_classical("logreg").fit(x_train[keep], y_train[keep], num_classes=4)
    proba = clf.predict_proba(x_test)
    assert proba.shape == (120, 4)
    assert (proba[:, 2] == 0).all() and np.allclose(proba.sum(axis=1), 1.0)


def test_errors(single_label):
    x_train, y_train, x_test, _ = single_label
    with pytest.raises(ConfigError, match="logreg, random_forest, svm"):
        create_classical("xgboost")
    with pytest.raises(DataError, match="call fit first"):
        create_classical("svm").predict_proba(x_test)
    with pytest.raises(DataError, match="one label row per image"):
        create_classical("knn").fit(x_train, y_train[:-1])
    with pytest.raises(DataError, match="at least two"):
        create_classical("knn").fit(x_train, np.zeros(len(x_train), dtype=int))
    with pytest.raises(DataError, match="0..2"):
        create_classical("knn").fit(x_train, y_train, num_classes=3)
    clf = create_classical("knn").fit(x_train, y_train)
    with pytest.raises(DataError, match="432 pixel values per image, not 144"):
        clf.predict_proba(x_test[:, :1])
