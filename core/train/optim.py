"""Optimisers and learning-rate schedules built from a :class:`TrainConfig`."""

from __future__ import annotations

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
        if self.kind == "none":
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
        if self.kind in ("cosine", "onecycle"):
            self.sched.step()

    def step_epoch(self, val_loss: float | None) -> None:
        if self.kind in ("step", "multistep"):
            self.sched.step()
        elif self.kind == "plateau" and val_loss is not None:
            self.sched.step(val_loss)

    def state_dict(self) -> dict:
        return self.sched.state_dict() if self.sched is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.sched is not None and state:
            self.sched.load_state_dict(state)


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
