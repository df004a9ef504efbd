"""Calibration: ECE and reliability bins on hand-made predictions, temperature scaling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax

from core.calibration import (
    T_MAX,
    T_MIN,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from core.errors import StudioError

# Four predictions over three classes, two bins (0, 0.5] and (0.5, 1]:
#   conf 0.90, right | conf 0.70, wrong  -> upper bin: confidence 0.8, accuracy 0.5
#   conf 0.40, right | conf 0.45, wrong  -> lower bin: confidence 0.425, accuracy 0.5
# ECE = 2/4 * |0.5 - 0.8| + 2/4 * |0.5 - 0.425| = 0.15 + 0.0375 = 0.1875
SCORES = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.4, 0.3, 0.3], [0.2, 0.45, 0.35]])
LABELS = np.array([0, 1, 0, 2])


def test_ece_hand_value():
    assert expected_calibration_error(SCORES, LABELS, n_bins=2) == pytest.approx(0.1875)
    # One bin: |mean accuracy - mean confidence| = |0.5 - 0.6125|.
    assert expected_calibration_error(SCORES, LABELS, n_bins=1) == pytest.approx(0.1125)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # Two predictions at 0.5 top-probability, one right and one wrong.
    scores = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    assert expected_calibration_error(scores, [0, 1], n_bins=10) == pytest.approx(0.0)


def test_multilabel_ece_uses_every_label_probability():
    # Lower bin: 0.2 (absent), 0.4 (present) -> confidence 0.3, fraction present 0.5.
    # Upper bin: 0.9 (present), 0.7 (absent) -> confidence 0.8, fraction present 0.5.
    # ECE = 2/4 * 0.2 + 2/4 * 0.3 = 0.25
    scores = np.array([[0.9, 0.2], [0.7, 0.4]])
    labels = np.array([[1, 0], [0, 1]])
    assert expected_calibration_error(scores, labels, n_bins=2) == pytest.approx(0.25)


def test_reliability_diagram_bins():
    d = reliability_diagram(SCORES, LABELS, n_bins=2)
    assert d["count"] == [2, 2]
    assert d["edges"] == [0.0, 0.5, 1.0]
    assert d["centers"] == [0.25, 0.75]
    assert d["confidence"] == pytest.approx([0.425, 0.8])
    assert d["accuracy"] == pytest.approx([0.5, 0.5])
    assert d["ece"] == pytest.approx(0.1875)

    d15 = reliability_diagram(SCORES, LABELS)  # 15 bins of width 1/15
    assert sum(d15["count"]) == 4 and len(d15["edges"]) == 16
    # 0.4 sits on the upper edge of bin 5 (1/3, 0.4]; 0.45 -> bin 6 (0.4, 0.467];
    # 0.7 -> bin 10 (0.667, 0.733]; 0.9 -> bin 13 (0.867, 0.933].
    assert [i for i, c in enumerate(d15["count"]) if c] == [5, 6, 10, 13]
    assert d15["accuracy"][0] is None and d15["confidence"][0] is None
    json.dumps(d15, allow_nan=False)


def test_bin_edges_belong_to_the_lower_bin():
    # A confidence of exactly 0.5 falls in (0, 0.5], as in Guo et al.
    d = reliability_diagram(np.array([[0.5, 0.5]]), [0], n_bins=2)
    assert d["count"] == [1, 0]


def _calibrated_logits(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2
    cdf = softmax(z, axis=1).cumsum(axis=1)
    y = (rng.random((n, 1)) > cdf).sum(axis=1)
    return z, np.minimum(y, k - 1)


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def test_temperature_recovers_overconfidence_factor_and_lowers_nll():
    z, y = _calibrated_logits(3000, 4, seed=0)
    over = 10 * z
    t = fit_temperature(over, y, "multi-class")
    assert t == pytest.approx(10, rel=0.08)
    before = _nll(apply_temperature(over, 1.0, "multi-class"), y)
    after = _nll(apply_temperature(over, t, "multi-class"), y)
    assert after < 0.5 * before
    # Scaling never changes the predicted class.
    assert np.array_equal(apply_temperature(over, t, "multi-class").argmax(1), over.argmax(1))


def test_temperature_is_one_on_calibrated_logits():
    z, y = _calibrated_logits(3000, 4, seed=1)
    assert fit_temperature(z, y, "multi-class") == pytest.approx(1.0, abs=0.08)
    zb, yb = _calibrated_logits(3000, 2, seed=2)
    assert fit_temperature(zb, yb, "binary") == pytest.approx(1.0, abs=0.08)


def test_multilabel_temperature_and_tensor_input():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4000, 3)) * 2
    y = (rng.random(z.shape) < expit(z)).astype(int)
    t = fit_temperature(torch.tensor(3 * z), torch.tensor(y), "multi-label")
    assert t == pytest.approx(3, rel=0.1)
    p = apply_temperature(3 * z, t, "multi-label")
    assert p.shape == z.shape and np.allclose(p, expit(3 * z / t))


def test_degenerate_validation_sets_stay_in_bounds():
    z = np.array([[5.0, -5.0], [-5.0, 5.0]])
    # Perfectly separated: sharper is always better until the NLL is 0 to machine precision.
    t = fit_temperature(z, [0, 1], "binary")
    assert T_MIN <= t < 0.2
    # Every answer wrong: the flattest distribution is best, so T goes up to its cap.
    assert fit_temperature(z, [1, 0], "binary") == pytest.approx(T_MAX, rel=1e-3)


@pytest.mark.parametrize(
    "logits, labels, task",
    [
        (np.zeros((3, 2)), [0, 1], "binary"),
        (np.zeros((3, 2)), [0, 1, 2], "binary"),
        (np.zeros((3, 2)), np.zeros((3, 3)), "multi-label"),
        (np.full((2, 2), np.nan), [0, 1], "binary"),
        (np.zeros((2, 2)), [0, 1], "survival"),
    ],
)
def test_fit_temperature_rejects_bad_inputs(logits, labels, task):
    with pytest.raises(StudioError):
        fit_temperature(logits, labels, task)


def test_apply_temperature_rejects_non_positive_t():
    with pytest.raises(StudioError):
        apply_temperature(np.zeros((2, 2)), 0.0, "binary")


def test_temperature_tames_a_deliberately_overconfident_network():
    """A real CNN trained on a noisy task, its last layer scaled up 8x: T > 1 lowers the val
    log loss and the test ECE, and never changes an answer."""
    from helpers_runs import TinyCNN, normalise, square_images, train

    def noisy(n, seed):
        images, labels, _ = square_images(n, seed=seed)
        flip = torch.from_numpy(np.random.default_rng(seed).random(n) < 0.2)
        return images, torch.where(flip, 1 - labels, labels)  # 20 % wrong labels: nobody can be sure

    torch.manual_seed(0)
    images, labels = noisy(256, 1)
    model = train(TinyCNN(), images, labels, steps=80, lr=1e-2)
    with torch.no_grad():
        model.head.weight.mul_(8.0)
        model.head.bias.mul_(8.0)
    logits = {}
    for split, seed in (("val", 2), ("test", 3)):
        x, y = noisy(400, seed)
        with torch.no_grad():
            logits[split] = (model(normalise(x)).numpy(), y.numpy())
    z_val, y_val = logits["val"]
    t = fit_temperature(z_val, y_val, "binary")
    assert 4 < t < 16  # about the 8x the logits were blown up by
    assert _nll(apply_temperature(z_val, t, "binary"), y_val) < 0.7 * _nll(apply_temperature(z_val, 1.0, "binary"),
                                                                            y_val)
    z_test, y_test = logits["test"]
    ece_before = expected_calibration_error(apply_temperature(z_test, 1.0, "binary"), y_test)
    ece_after = expected_calibration_error(apply_temperature(z_test, t, "binary"), y_test)
    assert ece_after < 0.5 * ece_before
    assert np.array_equal(apply_temperature(z_test, t, "binary").argmax(1), z_test.argmax(1))


def test_calibration_report_before_and_after():
    from core.calibration import calibration_report

    z, y = _calibrated_logits(2000, 3, seed=5)
    over = 4 * z
    scores = softmax(over, axis=1)
    t = fit_temperature(over, y, "multi-class")
    rep = calibration_report(scores, y, "multi-class", logits=over, temperature=t)
    assert rep["temperature"] == t
    assert rep["before"] == reliability_diagram(scores, y)
    assert rep["after"] == reliability_diagram(apply_temperature(over, t, "multi-class"), y)
    assert rep["after"]["ece"] < 0.5 * rep["before"]["ece"]
    json.dumps(rep, allow_nan=False)
    # A classical baseline saves no logits: only "before".
    assert calibration_report(scores, y, "multi-class") == {"before": rep["before"], "after": None,
                                                            "temperature": None}
