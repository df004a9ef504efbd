"""Loss functions, including the margin loss of seed 003 on a hand-worked example."""

import math

import pytest
import torch

from core.train.losses import MarginLoss, build_loss


def _logits(probs):
    # log-probabilities are logits whose softmax is exactly `probs`
    return torch.log(torch.tensor(probs, dtype=torch.float32))


def test_margin_loss_hand_worked():
    # sample 1: v = (0.7, 0.2, 0.1), class 0:
    #   present 0: (0.9 - 0.7)^2 = 0.04; absent 1: 0.5 * (0.2 - 0.1)^2 = 0.005; absent 2: 0.5 * 0 = 0
    # sample 2: v = (0.05, 0.05, 0.9), class 2: every term is 0
    # mean over the batch = (0.045 + 0) / 2 = 0.0225
    logits = _logits([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]])
    target = torch.tensor([0, 2])
    assert MarginLoss()(logits, target).item() == pytest.approx(0.0225, abs=1e-6)
    # class weights (2, 1, 1): sample 1 = 2 * 0.04 + 1 * 0.005 = 0.085 -> mean 0.0425
    weighted = MarginLoss(weight=torch.tensor([2.0, 1.0, 1.0]))(logits, target)
    assert weighted.item() == pytest.approx(0.0425, abs=1e-6)


def test_margin_loss_zero_when_confident_and_correct():
    logits = _logits([[0.95, 0.025, 0.025]])
    assert MarginLoss()(logits, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-9)


def test_margin_loss_has_gradient():
    logits = _logits([[0.4, 0.3, 0.3]]).requires_grad_()
    MarginLoss()(logits, torch.tensor([0])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_build_loss_choices():
    ce = build_loss("auto", "multi-class", label_smoothing=0.1)
    assert isinstance(ce, torch.nn.CrossEntropyLoss) and ce.label_smoothing == 0.1
    bce = build_loss("auto", "multi-label")
    logits = torch.zeros(2, 3)
    # BCE of logit 0 against any 0/1 target is log 2
    assert bce(logits, torch.tensor([[1, 0, 1], [0, 0, 1]])).item() == pytest.approx(math.log(2), abs=1e-6)
    assert isinstance(build_loss("margin", "binary"), MarginLoss)
    with pytest.raises(ValueError):
        build_loss("bce", "multi-class")


def test_weighted_cross_entropy_matches_manual():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    w = torch.tensor([1.0, 3.0])
    loss = build_loss("ce", "binary", class_weights=w)(logits, target)
    l0 = -torch.log_softmax(logits, 1)[0, 0]
    l1 = -torch.log_softmax(logits, 1)[1, 1]
    assert loss.item() == pytest.approx(((1 * l0 + 3 * l1) / 4).item(), abs=1e-6)
