"""Uncertainty: entropy values, confidence bands and sentences, per-class tables, MC dropout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import StudioError
from core.inference import mc_dropout_predict
from core.models.profile import has_dropout
from core.uncertainty import (
    HIGH_MAX_ENTROPY,
    HIGH_MIN_PROB,
    LOW_MAX_PROB,
    LOW_MIN_ENTROPY,
    confidence_level,
    describe_confidence,
    normalized_entropy,
    per_class_uncertainty,
    predictive_entropy,
)

# ---------------------------------------------------------------- entropy


def test_entropy_hand_values():
    scores = np.array([[0.25] * 4, [1.0, 0, 0, 0], [0.5, 0.25, 0.25, 0.0]])
    h = predictive_entropy(scores, "multi-class")
    # Uniform over 4 -> log 4; one-hot -> 0; 0.5 log 2 + 2 * 0.25 log 4 = 1.5 log 2.
    assert h == pytest.approx([math.log(4), 0.0, 1.5 * math.log(2)])
    assert normalized_entropy(scores, "multi-class") == pytest.approx([1.0, 0.0, 0.75])
    assert predictive_entropy(np.array([[0.5, 0.5]]), "binary") == pytest.approx([math.log(2)])


def test_multilabel_entropy_is_mean_binary_entropy():
    scores = np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 1.0], [0.5, 1.0, 0.0]])
    h = predictive_entropy(scores, "multi-label")
    assert h == pytest.approx([math.log(2), 0.0, math.log(2) / 3])
    assert normalized_entropy(scores, "multi-label") == pytest.approx([1.0, 0.0, 1 / 3])


def test_entropy_rejects_bad_input():
    with pytest.raises(StudioError):
        predictive_entropy(np.array([0.5, 0.5]), "binary")
    with pytest.raises(StudioError):
        predictive_entropy(np.array([[np.nan, 1.0]]), "binary")
    with pytest.raises(StudioError):
        predictive_entropy(np.array([[0.5, 0.5]]), "segmentation")


# ---------------------------------------------------------------- confidence bands


def test_threshold_constants():
    assert (HIGH_MIN_PROB, HIGH_MAX_ENTROPY, LOW_MAX_PROB, LOW_MIN_ENTROPY) == (0.9, 0.25, 0.6, 0.6)


@pytest.mark.parametrize(
    "prob, ent, level",
    [
        (0.9, 0.25, "high"),  # both "high" limits are inclusive
        (0.99, 0.0, "high"),
        (0.8999, 0.1, "moderate"),  # just under the probability limit
        (0.95, 0.2501, "moderate"),  # just over the entropy limit
        (0.6, 0.6, "moderate"),  # both "low" limits are exclusive
        (0.5999, 0.1, "low"),
        (0.95, 0.6001, "low"),  # one warning sign is enough
    ],
)
def test_confidence_level_at_thresholds(prob, ent, level):
    assert confidence_level(prob, ent) == level


def test_describe_confidence_sentences():
    names = ["malignant", "benign"]
    assert describe_confidence([0.97, 0.03], names, "binary") == (
        "High confidence: the model gives 97% to 'malignant' and little to the other classes."
    )
    # 4 classes, top 0.85 and normalised entropy about 0.40 -> moderate.
    four = ["a", "b", "c", "d"]
    assert describe_confidence([0.85, 0.1, 0.03, 0.02], four) == (
        "Moderate confidence: the model favours 'a' (85%), with 'b' next at 10%."
    )
    low = describe_confidence([0.15, 0.45, 0.4], ["x", "y", "z"])
    assert low.startswith("Low confidence: the model is unsure; 'y' gets only 45% and 'z' 40%")
    assert describe_confidence([0.999, 0.001], names, "binary").startswith(
        "High confidence: the model gives over 99% to 'malignant'"
    )
    with pytest.raises(StudioError):
        describe_confidence([0.5, 0.5], ["only one name"])


def test_describe_confidence_multilabel():
    names = ["effusion", "nodule", "mass"]
    assert describe_confidence([0.98, 0.01, 0.02], names, "multi-label") == (
        "High confidence: the model finds 'effusion' (98%) and is clear about every label."
    )
    text = describe_confidence([0.9, 0.45, 0.1], names, "multi-label")
    assert text.startswith("Low confidence: the model finds 'effusion' (90%)")
    assert "'nodule' at 45%" in text


# ---------------------------------------------------------------- per-class table


def test_per_class_uncertainty_hand_case():
    scores = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.5, 0.5, 0.0]])
    labels = np.array([0, 0, 1])
    rows = per_class_uncertainty(scores, labels, ["a", "b", "c"], "multi-class")
    h1 = -(0.8 * math.log(0.8) + 2 * 0.1 * math.log(0.1))
    h2 = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    a, b, c = rows
    assert a["class"] == "a" and a["n"] == 2
    assert a["mean_entropy"] == pytest.approx((h1 + h2) / 2)
    assert a["mean_normalized_entropy"] == pytest.approx((h1 + h2) / 2 / math.log(3))
    assert a["mean_max_prob"] == pytest.approx(0.7)
    assert a["std_max_prob"] == pytest.approx(0.1)  # population std of 0.8 and 0.6
    assert b == {
        "class": "b",
        "n": 1,
        "mean_entropy": pytest.approx(math.log(2)),
        "mean_normalized_entropy": pytest.approx(math.log(2) / math.log(3)),
        "mean_max_prob": pytest.approx(0.5),
        "std_max_prob": 0.0,
    }
    assert c == {"class": "c", "n": 0, "mean_entropy": None, "mean_normalized_entropy": None,
                 "mean_max_prob": None, "std_max_prob": None}


def test_per_class_uncertainty_multilabel():
    scores = np.array([[0.9, 0.5], [0.7, 0.2], [0.1, 0.8]])
    labels = np.array([[1, 1], [1, 0], [0, 1]])
    first, second = per_class_uncertainty(scores, labels, ["e", "n"], "multi-label")
    # Label "e" is present in samples 0 and 1, whose own probabilities are 0.9 and 0.7.
    assert first["n"] == 2 and first["mean_max_prob"] == pytest.approx(0.8)
    assert first["std_max_prob"] == pytest.approx(0.1)
    hb = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert first["mean_entropy"] == pytest.approx((hb(0.9) + hb(0.7)) / 2)
    assert second["n"] == 2 and second["mean_max_prob"] == pytest.approx(0.65)


# ---------------------------------------------------------------- MC dropout


def _mlp(dropout: float = 0.5) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, 3))
    return nn.Sequential(*layers)


class _LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 8, num_layers=2, dropout=0.5, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def test_has_dropout():
    assert has_dropout(_mlp(0.5))
    assert not has_dropout(_mlp(0.0))
    assert not has_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)))
    assert has_dropout(_LSTMClassifier())
    assert not has_dropout(nn.LSTM(4, 8, num_layers=1))


def test_mc_dropout_varies_and_is_seeded():
    model = _mlp(0.5)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    rng_before = torch.get_rng_state()
    bn_before = model[1].running_mean.clone()
    a = mc_dropout_predict(model, x, n_passes=10, seed=3)
    b = mc_dropout_predict(model, x, n_passes=10, seed=3)
    c = mc_dropout_predict(model, x, n_passes=10, seed=4)
    assert a["mean"].shape == (5, 3) and a["std"].shape == (5, 3) and a["entropy"].shape == (5,)
    assert a["n_passes"] == 10
    assert np.array_equal(a["mean"], b["mean"]) and np.array_equal(a["std"], b["std"])
    assert not np.array_equal(a["mean"], c["mean"])
    assert (a["std"] > 0).any()
    assert np.allclose(a["mean"].sum(axis=1), 1.0)
    assert np.allclose(a["entropy"], predictive_entropy(a["mean"], "multi-class"))
    # Batch norm stayed in eval mode (running stats untouched); the global RNG was not consumed.
    assert torch.equal(model[1].running_mean, bn_before)
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_mc_dropout_without_dropout_has_zero_std():
    model = _mlp(0.0)
    x = torch.randn(4, 8)
    out = mc_dropout_predict(model, x, n_passes=20)
    assert np.all(out["std"] == 0) and out["n_passes"] == 1
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x).double(), dim=1).numpy()
    assert np.allclose(out["mean"], expected)


def test_mc_dropout_restores_every_module_mode():
    model = _mlp(0.5)
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    mc_dropout_predict(model, torch.randn(3, 8), n_passes=3)
    assert [m.training for m in model.modules()] == before
    model.eval()
    mc_dropout_predict(model, torch.randn(3, 8), n_passes=3)
    assert not any(m.training for m in model.modules())


def test_mc_dropout_restores_modes_on_error():
    class Tupled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(x), x

    model = Tupled().train()
    with pytest.raises(StudioError):
        mc_dropout_predict(model, torch.randn(2, 3), n_passes=2)
    assert model.training and model.drop.training


def test_mc_dropout_lstm_and_multilabel():
    model = _LSTMClassifier().eval()
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(2))
    out = mc_dropout_predict(model, x, n_passes=8, seed=0)
    assert (out["std"] > 0).any()
    assert not model.lstm.training
    ml = mc_dropout_predict(_mlp(0.5), torch.randn(4, 8), n_passes=5, task="multi-label")
    assert ml["mean"].shape == (4, 3)
    assert not np.allclose(ml["mean"].sum(axis=1), 1.0)  # sigmoid per label, not a softmax
    assert np.all((ml["mean"] > 0) & (ml["mean"] < 1))


def test_per_class_uncertainty_rejects_bad_input():
    scores = np.array([[0.8, 0.2], [0.4, 0.6]])
    with pytest.raises(StudioError):
        per_class_uncertainty(scores, [0, 2], ["a", "b"], "binary")  # label out of range
    with pytest.raises(StudioError):
        per_class_uncertainty(scores, [0, 1, 1], ["a", "b"], "binary")  # one label too many
    with pytest.raises(StudioError):
        per_class_uncertainty(scores * 3, [0, 1], ["a", "b"], "binary")  # not probabilities


def test_mc_dropout_with_mirror_images_and_temperature():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.drop, self.head = nn.Conv2d(1, 4, 3), nn.Dropout(0.5), nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.head(self.drop(self.conv(x).flatten(1)))

    torch.manual_seed(0)
    model = Conv().eval()
    x = torch.randn(2, 1, 8, 8)
    # With dropout off (p = 0), a pass is deterministic: check the arithmetic exactly.
    model.drop.p = 0.0
    with torch.no_grad():
        z = 0.5 * (model(x) + model(torch.flip(x, dims=[3]))).double()
    out = mc_dropout_predict(model, x, n_passes=3, tta=True, temperature=2.0)
    np.testing.assert_allclose(out["mean"], torch.softmax(z / 2.0, dim=1).numpy(), rtol=1e-6)
    assert out["n_passes"] == 1 and not out["std"].any()
    # With dropout on, a higher temperature flattens the mean and narrows the spread.
    model.drop.p = 0.5
    hot = mc_dropout_predict(model, x, n_passes=30, seed=1)
    cool = mc_dropout_predict(model, x, n_passes=30, seed=1, temperature=5.0)
    assert hot["std"].mean() > cool["std"].mean() > 0
    assert cool["entropy"].mean() > hot["entropy"].mean()
    with pytest.raises(StudioError, match="temperature"):
        mc_dropout_predict(model, x, temperature=0.0)


def test_confidence_rules_text_and_readme_state_the_thresholds():
    from pathlib import Path

    from core.uncertainty import confidence_rules

    text = confidence_rules()
    for value in (f"{HIGH_MIN_PROB:.0%}", f"{HIGH_MAX_ENTROPY:g}", f"{LOW_MAX_PROB:.0%}", f"{LOW_MIN_ENTROPY:g}"):
        assert value in text
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## How confident is the answer?")[1].split("\n## ")[0]
    assert f"at least {HIGH_MIN_PROB:g}" in section and f"at most {HIGH_MAX_ENTROPY:g}" in section
    assert f"below {LOW_MAX_PROB:g}" in section and f"above {LOW_MIN_ENTROPY:g}" in section
    # The two-class equivalents quoted in both places are what confidence_level() does.
    assert confidence_level(0.959, normalized_entropy(np.array([[0.959, 0.041]]), "binary")[0]) == "high"
    assert confidence_level(0.957, normalized_entropy(np.array([[0.957, 0.043]]), "binary")[0]) == "moderate"
    assert confidence_level(0.855, normalized_entropy(np.array([[0.855, 0.145]]), "binary")[0]) == "moderate"
    assert confidence_level(0.853, normalized_entropy(np.array([[0.853, 0.147]]), "binary")[0]) == "low"
