"""A small callback system: eight no-op hooks the trainer calls, and the callbacks it ships.

A callback stops training by setting ``trainer.should_stop`` (and ``trainer.stop_reason``);
its state goes into the checkpoint through ``state_dict`` so a resumed run carries on.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable

from core.errors import ConfigError

LOWER_IS_BETTER = {"val_loss": True, "val_acc": False, "val_auc": False, "train_loss": True}


class Callback:
    """Base class: every hook is a no-op."""

    def on_fit_start(self, trainer) -> None: ...
    def on_epoch_start(self, trainer, epoch: int) -> None: ...
    def on_step_end(self, trainer, step: int, logs: dict[str, float] | None) -> None: ...
    def on_validation_end(self, trainer, epoch: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer, status: str) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _metric(logs: dict[str, float], name: str) -> float:
    if name not in logs:
        raise ConfigError(f"metric '{name}' is not computed; available: {', '.join(sorted(logs))}.")
    return logs[name]


def _improved(value: float, best: float | None, lower_is_better: bool, min_delta: float = 0.0) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value < best - min_delta if lower_is_better else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.lower = LOWER_IS_BETTER.get(monitor, True)
        self.best: float | None = None
        self.wait = 0

    def on_validation_end(self, trainer, epoch, logs):
        value = _metric(logs, self.monitor)
        if _improved(value, self.best, self.lower, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.should_stop = True
            trainer.stop_reason = f"early stopping: {self.monitor} did not improve for {self.patience} epochs"
            trainer.stop_kind = "early_stopping"  # core.train.progress words it for people

    def state_dict(self):
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state):
        self.best, self.wait = state.get("best"), state.get("wait", 0)


class BestCheckpoint(Callback):
    """Keep the weights of the epoch with the best ``monitor`` value (saved as ``best``)."""

    def __init__(self, monitor: str = "val_loss", save: Callable[[str], None] | None = None):
        self.monitor = monitor
        self.lower = LOWER_IS_BETTER.get(monitor, True)
        self.save = save
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_validation_end(self, trainer, epoch, logs):
        value = _metric(logs, self.monitor)
        if _improved(value, self.best, self.lower):
            self.best, self.best_epoch = value, epoch
            trainer.best_epoch = epoch
            if self.save is not None:
                self.save("best")

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")


class Dwell(Callback):
    """Seed 001's "dwell": when val loss does not improve, go back to the last good weights.

    The weights (and optimiser state) of the last epoch that improved val loss are kept in
    memory; an epoch that does not improve is undone before the next one starts.
    """

    def __init__(self):
        self.best: float | None = None
        self.saved: dict[str, Any] | None = None
        self.restored = 0

    def on_validation_end(self, trainer, epoch, logs):
        value = _metric(logs, "val_loss")
        if _improved(value, self.best, True):
            self.best = value
            self.saved = {
                "model": copy.deepcopy(trainer.model.state_dict()),
                "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
            }
        elif self.saved is not None:
            trainer.model.load_state_dict(self.saved["model"])
            trainer.optimizer.load_state_dict(self.saved["optimizer"])
            self.restored += 1
            logs["dwell_restored"] = 1.0

    def state_dict(self):
        return {"best": self.best, "restored": self.restored}

    def load_state_dict(self, state):
        self.best, self.restored = state.get("best"), state.get("restored", 0)


class StopOnRequest(Callback):
    """Ends training when ``should_cancel()`` turns true (checked every few steps)."""

    def __init__(self, should_cancel: Callable[[], bool], every: int = 5):
        self.should_cancel, self.every = should_cancel, every

    def on_step_end(self, trainer, step, logs):
        if step % self.every == 0 and self.should_cancel():
            trainer.should_stop = True
            trainer.cancelled = True
            trainer.stop_reason = "cancelled by the user"
            trainer.stop_kind = "cancelled"


class TimeBudget(Callback):
    """Stop after ``minutes`` of training (checked at each epoch end, so the epoch finishes)."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.start = None
        self.spent_before = 0.0

    def on_fit_start(self, trainer):
        self.start = time.monotonic()

    def on_epoch_end(self, trainer, epoch, logs):
        spent = self.spent_before + time.monotonic() - self.start
        # stop when another epoch like the last one would overrun the budget
        per_epoch = spent / max(1, epoch - trainer.start_epoch + 1)
        if spent + per_epoch > self.seconds * 1.02:
            trainer.should_stop = True
            trainer.stop_reason = f"time budget of {self.seconds / 60:.1f} minutes reached"
            trainer.stop_kind = "time_limit"

    def state_dict(self):
        spent = self.spent_before + (time.monotonic() - self.start if self.start else 0.0)
        return {"spent": spent}

    def load_state_dict(self, state):
        self.spent_before = state.get("spent", 0.0)


class Reporter(Callback):
    """Forwards step and epoch logs to a sink (the run's metrics.jsonl, a progress bar)."""

    def __init__(self, on_step: Callable[[dict], None] | None = None,
                 on_epoch: Callable[[dict], None] | None = None):
        self._on_step, self._on_epoch = on_step, on_epoch

    def on_step_end(self, trainer, step, logs):
        if logs is not None and self._on_step is not None:
            self._on_step(logs)

    def on_epoch_end(self, trainer, epoch, logs):
        if self._on_epoch is not None:
            self._on_epoch(logs)
