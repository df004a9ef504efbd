"""Weight averaging (EMA): the average follows the documented formula, validation and the
best checkpoint use the averaged weights, and a resumed run carries both sets on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.train.config import TrainConfig, validate
from core.errors import ConfigError
from core.train.trainer import WeightAverage
from tests.helpers_runs import square_trainer


def test_average_follows_the_warmed_up_decay():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg.update(model)  # n = 1: d = min(0.9, 2 / 11)
    d1 = 2 / 11
    assert float(avg.shadow["weight"]) == pytest.approx(1 - d1)
    for _ in range(20):
        avg.update(model)
    w = 1 - d1
    for n in range(2, 22):
        d = min(0.9, (1 + n) / (10 + n))
        w = d * w + (1 - d) * 1.0
    assert float(avg.shadow["weight"]) == pytest.approx(w)
    assert 0.5 < w < 1.0


def test_swapped_in_restores_the_raw_weights():
    model = nn.Linear(2, 1)
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    raw = model.weight.detach().clone()
    with avg.swapped_in(model):
        assert not torch.equal(model.weight, raw)
    assert torch.equal(model.weight, raw)


def test_ema_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="weight averaging"):
        validate(TrainConfig(dataset="x", model="medvcnn", ema=1.0))


def _trainer(cfg):
    return square_trainer(cfg)


def test_checkpoint_holds_the_average_and_resume_continues_it():
    cfg = TrainConfig(dataset="x", model="tiny", epochs=2, batch_size=16, optimizer="adam", lr=1e-2, ema=0.9)
    a = _trainer(cfg)
    a.fit()
    state = a.state()
    assert state["ema_updates"] == 2 * 4
    for k, v in state["state_dict"].items():  # the evaluated weights are the average
        assert torch.equal(v, a.ema.shadow[k].cpu())
    assert not torch.equal(state["state_dict"]["5.weight"], state["train_state_dict"]["5.weight"])
    b = _trainer(cfg.replace(epochs=3))
    b.load_state(state)
    assert b.ema.updates == 8
    assert torch.equal(b.model.state_dict()["5.weight"], state["train_state_dict"]["5.weight"])
    b.fit()
    assert b.epoch == 3 and b.ema.updates == 12
