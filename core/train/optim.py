"""Optimisers and learning-rate schedules built from a :class:`TrainConfig`."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from core.train.config import TrainConfig


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum), Adam, AdamW, Adamax or RMSprop over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {cfg.optimizer}")


class Schedule:
    """One object over the six schedules, so the trainer steps it the same way for all.

    Cosine and one-cycle change the rate every batch; step, multistep and plateau once an
    epoch (plateau on the validation loss).
    """

    def __init__(self, cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        self.kind = cfg.schedule
        total = max(1, cfg.epochs * steps_per_epoch)
        opt = optimizer
        # With a time budget, cosine and one-cycle anneal over whichever ends first, the
        # epochs or the minutes, so a budgeted run finishes at a low rate instead of being
        # cut off halfway down the curve. The rate then depends on the machine's speed.
        self.timed = None
        if cfg.max_minutes and self.kind in ("cosine", "onecycle"):
            self.timed = _TimedAnneal(self.kind, opt, cfg.lr, total, cfg.max_minutes * 60.0)
            self.sched = None
        elif self.kind == "none":
            self.sched = None
        elif self.kind == "step":
            self.sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        elif self.kind == "multistep":
            marks = sorted({max(1, round(m * cfg.epochs)) for m in cfg.milestones})
            self.sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=marks, gamma=cfg.gamma)
        elif self.kind == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        elif self.kind == "onecycle":
            # pct_start 0.25: a short warm-up, then a long anneal, which suits short CPU runs.
            self.sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.25)
        elif self.kind == "plateau":
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        else:
            raise ValueError(f"unknown schedule {self.kind}")

    def step_batch(self) -> None:
        if self.timed is not None:
            self.timed.step()
        elif self.kind in ("cosine", "onecycle"):
            self.sched.step()

    def step_epoch(self, val_loss: float | None) -> None:
        if self.kind in ("step", "multistep"):
            self.sched.step()
        elif self.kind == "plateau" and val_loss is not None:
            self.sched.step(val_loss)

    def state_dict(self) -> dict:
        if self.timed is not None:
            return self.timed.state_dict()
        return self.sched.state_dict() if self.sched is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.timed is not None and state:
            self.timed.load_state_dict(state)
        elif self.sched is not None and state:
            self.sched.load_state_dict(state)


class _TimedAnneal:
    """Cosine or one-cycle over progress = max(steps done / total, seconds spent / budget).

    One-cycle follows torch's OneCycleLR shape (warm-up over the first 25 % from lr / 25 to
    lr, then a cosine down to lr / 25e4); cosine goes from lr to 0.
    """

    def __init__(self, kind: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int, budget_s: float):
        self.kind, self.opt, self.lr = kind, optimizer, lr
        self.total, self.budget = total_steps, budget_s
        self.steps = 0
        self.spent_before = 0.0
        self.started: float | None = None
        self._set(self.rate(0.0))

    def progress(self) -> float:
        if self.started is None:
            self.started = time.monotonic()
        spent = self.spent_before + time.monotonic() - self.started
        return min(1.0, max(self.steps / self.total, spent / self.budget))

    def rate(self, p: float) -> float:
        if self.kind == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * p))
        start, end, warm = self.lr / 25, self.lr / 25e4, 0.25
        if p < warm:
            return start + (self.lr - start) * 0.5 * (1 - math.cos(math.pi * p / warm))
        q = (p - warm) / (1 - warm)
        return end + (self.lr - end) * 0.5 * (1 + math.cos(math.pi * q))

    def _set(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.steps += 1
        self._set(self.rate(self.progress()))

    def state_dict(self) -> dict:
        spent = self.spent_before + (time.monotonic() - self.started if self.started is not None else 0.0)
        return {"timed_steps": self.steps, "timed_spent": spent}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state.get("timed_steps", 0))
        self.spent_before = float(state.get("timed_spent", 0.0))
        self.started = None


def dense_penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """L1/L2 penalty on the dense (Linear) layers' weights, as seed 001 regularises them."""
    if not l1 and not l2:
        return None
    total = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            w = m.weight
            term = (l1 * w.abs().sum() if l1 else 0) + (l2 * (w * w).sum() if l2 else 0)
            total = term if total is None else total + term
    return total
