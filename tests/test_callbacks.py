"""Early stopping, best-checkpoint selection and seed 001's dwell on scripted metric sequences."""

import pytest
import torch

from core.errors import ConfigError
from core.train.callbacks import BestCheckpoint, Dwell, EarlyStopping, TimeBudget


class FakeTrainer:
    def __init__(self):
        self.should_stop = False
        self.stop_reason = None
        self.best_epoch = None
        self.start_epoch = 1
        self.model = torch.nn.Linear(2, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)


def _feed(cb, trainer, values, key="val_loss"):
    stopped_at = None
    for epoch, v in enumerate(values, start=1):
        cb.on_validation_end(trainer, epoch, {key: v, "val_acc": 0.5})
        if trainer.should_stop and stopped_at is None:
            stopped_at = epoch
    return stopped_at


def test_early_stopping_stops_after_patience():
    t = FakeTrainer()
    # best at epoch 2 (0.8); epochs 3, 4, 5 do not improve -> stop at epoch 5 with patience 3
    assert _feed(EarlyStopping("val_loss", patience=3), t, [1.0, 0.8, 0.85, 0.81, 0.9, 0.5]) == 5
    assert "did not improve for 3 epochs" in t.stop_reason


def test_early_stopping_resets_on_improvement():
    t = FakeTrainer()
    assert _feed(EarlyStopping("val_loss", patience=2), t, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85]) is None


def test_early_stopping_on_auc_is_higher_better():
    t = FakeTrainer()
    assert _feed(EarlyStopping("val_auc", patience=2), t, [0.7, 0.8, 0.79, 0.75], key="val_auc") == 4


def test_missing_metric_lists_available():
    with pytest.raises(ConfigError, match="available: val_acc, val_loss"):
        EarlyStopping("val_auc").on_validation_end(FakeTrainer(), 1, {"val_loss": 1.0, "val_acc": 0.5})


def test_best_checkpoint_selection():
    saved = []
    t = FakeTrainer()
    cb = BestCheckpoint("val_loss", save=lambda which: saved.append((which, len(saved))))
    _feed(cb, t, [0.9, 0.7, 0.75, 0.6, 0.65])
    assert cb.best_epoch == 4 and t.best_epoch == 4 and cb.best == 0.6
    assert [w for w, _ in saved] == ["best"] * 3  # saved at epochs 1, 2 and 4
    cb_auc = BestCheckpoint("val_auc")
    _feed(cb_auc, FakeTrainer(), [0.8, 0.9, 0.85], key="val_auc")
    assert cb_auc.best_epoch == 2


def test_best_checkpoint_ignores_nan():
    cb = BestCheckpoint("val_auc")
    _feed(cb, FakeTrainer(), [float("nan"), 0.6, float("nan")], key="val_auc")
    assert cb.best_epoch == 2


def test_dwell_restores_previous_weights():
    t = FakeTrainer()
    cb = Dwell()
    with torch.no_grad():
        t.model.weight.fill_(1.0)
    cb.on_validation_end(t, 1, {"val_loss": 0.5})  # improvement: remembers weight 1.0
    with torch.no_grad():
        t.model.weight.fill_(2.0)
    cb.on_validation_end(t, 2, {"val_loss": 0.4})  # improvement: remembers 2.0
    with torch.no_grad():
        t.model.weight.fill_(3.0)
    logs = {"val_loss": 0.45}
    cb.on_validation_end(t, 3, logs)  # worse: back to 2.0
    assert torch.all(t.model.weight == 2.0)
    assert logs["dwell_restored"] == 1.0 and cb.restored == 1
    with torch.no_grad():
        t.model.weight.fill_(4.0)
    cb.on_validation_end(t, 4, {"val_loss": 0.3})  # improvement: keeps 4.0
    assert torch.all(t.model.weight == 4.0)


def test_callback_state_round_trip():
    t = FakeTrainer()
    es = EarlyStopping("val_loss", patience=3)
    _feed(es, t, [1.0, 1.2])
    es2 = EarlyStopping("val_loss", patience=3)
    es2.load_state_dict(es.state_dict())
    assert (es2.best, es2.wait) == (1.0, 1)


def test_time_budget_stops_before_overrun(monkeypatch):
    import core.train.callbacks as cbmod

    clock = iter([0.0, 40.0, 85.0])
    monkeypatch.setattr(cbmod.time, "monotonic", lambda: next(clock))
    t = FakeTrainer()
    cb = TimeBudget(minutes=2)
    cb.on_fit_start(t)
    cb.on_epoch_end(t, 1, {})  # 40 s spent, another epoch -> 80 s: fine
    assert not t.should_stop
    cb.on_epoch_end(t, 2, {})  # 85 s spent, another (~42 s) -> 127 s: over the 2-minute budget
    assert t.should_stop and "time budget" in t.stop_reason
