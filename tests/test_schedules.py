"""Learning-rate schedules: the six kinds step as documented, and a time budget makes cosine
and one-cycle anneal over the minutes when those run out before the epochs."""

from __future__ import annotations

import math

import pytest
import torch

from core.train import optim as optim_mod
from core.train.config import TrainConfig
from core.train.optim import Schedule, build_optimizer


def _setup(**kw):
    cfg = TrainConfig(dataset="x", model="medvcnn", lr=0.1, **kw)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    return cfg, opt


def _lr(opt):
    return opt.param_groups[0]["lr"]


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_step_based_anneal_ends_low(kind):
    cfg, opt = _setup(schedule=kind, epochs=2)
    s = Schedule(cfg, opt, steps_per_epoch=10)
    rates = []
    for _ in range(20):
        opt.step()
        s.step_batch()
        rates.append(_lr(opt))
    assert max(rates) == pytest.approx(0.1, rel=0.05)
    assert rates[-1] < 0.02 * 0.1  # annealed to under 2 % of the peak


def test_multistep_and_plateau_change_once_an_epoch():
    cfg, opt = _setup(schedule="multistep", epochs=4, milestones=(0.5, 0.75), gamma=0.1)
    s = Schedule(cfg, opt, steps_per_epoch=3)
    seen = []
    for _ in range(4):
        opt.step()
        s.step_batch()
        s.step_epoch(1.0)
        seen.append(round(_lr(opt), 6))
    assert seen == [0.1, 0.01, 0.001, 0.001]
    cfg, opt = _setup(schedule="plateau", plateau_patience=0, plateau_factor=0.5)
    s = Schedule(cfg, opt, steps_per_epoch=3)
    s.step_epoch(1.0)
    s.step_epoch(1.0)  # no improvement: halve
    assert _lr(opt) == pytest.approx(0.05)


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_time_budget_anneals_over_the_minutes(monkeypatch, kind):
    clock = _Clock()
    monkeypatch.setattr(optim_mod.time, "monotonic", clock)
    # 100 epochs x 10 steps would take far longer than the 1-minute budget
    cfg, opt = _setup(schedule=kind, epochs=100, max_minutes=1.0)
    s = Schedule(cfg, opt, steps_per_epoch=10)
    assert s.timed is not None
    s.step_batch()  # starts the clock
    peak = 0.0
    for second in range(1, 61):
        clock.t += 1.0
        s.step_batch()
        peak = max(peak, _lr(opt))
        if second == 15 and kind == "onecycle":  # end of the 25 % warm-up
            assert _lr(opt) == pytest.approx(0.1, rel=1e-3)
        if second == 30 and kind == "cosine":
            assert _lr(opt) == pytest.approx(0.05, rel=1e-3)
    assert peak == pytest.approx(0.1, rel=1e-3)
    assert _lr(opt) < 1e-5  # at the end of the budget the rate is at its floor
    clock.t += 30
    s.step_batch()
    assert _lr(opt) < 1e-5  # and it stays there


def test_time_budget_follows_steps_when_the_epochs_end_first(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(optim_mod.time, "monotonic", clock)
    cfg, opt = _setup(schedule="cosine", epochs=1, max_minutes=60.0)
    s = Schedule(cfg, opt, steps_per_epoch=10)
    for _ in range(5):
        clock.t += 0.01
        s.step_batch()
    assert _lr(opt) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-6)


def test_time_budget_state_survives_a_resume(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(optim_mod.time, "monotonic", clock)
    cfg, opt = _setup(schedule="cosine", epochs=100, max_minutes=1.0)
    s = Schedule(cfg, opt, steps_per_epoch=10)
    s.step_batch()
    clock.t += 30
    s.step_batch()
    state = s.state_dict()
    assert state["timed_spent"] == pytest.approx(30.0)
    cfg2, opt2 = _setup(schedule="cosine", epochs=100, max_minutes=1.0)
    s2 = Schedule(cfg2, opt2, steps_per_epoch=10)
    s2.load_state_dict(state)
    clock.t += 100  # time while nobody trained does not count
    s2.step_batch()
    assert _lr(opt2) == pytest.approx(0.05, abs=1e-3)
