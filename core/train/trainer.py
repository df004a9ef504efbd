"""The device-aware trainer: ``train_one_epoch`` and ``predict`` as plain functions, and a
:class:`Trainer` that runs epochs, validation, callbacks and checkpoints.

Speed notes (measured in ``bench/``): the whole split stays a uint8 tensor (moved to the
GPU once when there is one), batches are normalised and augmented as tensors, and the loss
is summed on the device so that no step waits on the host except the logging steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from core.errors import StudioError
from core.forward import forward_logits, normalization, normalize, scores_from_logits
import core.train.distributed as distributed
from core.train.callbacks import Callback
from core.train.config import TrainConfig
from core.train.device import amp_dtype, training_dtype
from core.train.losses import build_loss
from core.train.optim import Schedule, build_optimizer, dense_penalty
from core.train.weight_average import WeightAverage
from core.vocab import TASK_TO_MEDMNIST


class TrainingDiverged(StudioError):
    """The loss became NaN or infinite."""


@dataclass
class Batches:
    """A split as uint8 images (N, C, H, W) and labels, plus how to normalise them.

    ``images`` may be a :class:`core.data.ondisk.DiskImages` (a split too big for memory):
    it stays on the host and :meth:`get` moves one batch at a time.
    """

    images: torch.Tensor
    labels: torch.Tensor
    scale: torch.Tensor  # (1, C, 1, 1): 1 / (255 * std)
    shift: torch.Tensor  # (1, C, 1, 1): mean / std

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> "Batches":
        if not isinstance(self.images, torch.Tensor):  # on disk: never copied whole to the device
            return Batches(self.images, self.labels, self.scale.to(device), self.shift.to(device))
        return Batches(self.images.to(device), self.labels.to(device), self.scale.to(device), self.shift.to(device))

    def get(self, idx: torch.Tensor | slice, device: torch.device, channels_last: bool = False):
        """A normalised float batch and its labels on ``device``."""
        x = normalize(self.images[idx].to(device, non_blocking=True), self.scale, self.shift)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx].to(device, non_blocking=True)


def make_batches(images: torch.Tensor, labels: torch.Tensor, mean, std) -> Batches:
    """Wrap a split; ``mean``/``std`` are per-channel (only the first C values are used)."""
    return Batches(images, labels, *normalization(mean, std, images.shape[1]))


@torch.inference_mode()
def predict_logits(model: nn.Module, data: Batches, device: torch.device, batch_size: int = 512,
                   tta: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Logits for a whole split, in order, as a float32 CPU tensor.

    Args:
        model: the network (put in eval mode here).
        data: the split.
        device: where to run.
        batch_size: inference batch size.
        tta: average the logits of the image and its horizontal flip.
        channels_last: use the channels-last memory format (CUDA).
    """
    model.eval()
    out = []
    dtype = amp_dtype(device)
    for start in range(0, len(data), batch_size):
        x, _ = data.get(slice(start, start + batch_size), device, channels_last)
        with _autocast(device, dtype):
            logits = forward_logits(model, x, tta)
        out.append(logits.cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    # One code path: a no-op context where mixed precision does not apply.
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def quick_metrics(scores: np.ndarray, labels: np.ndarray, task: str) -> dict[str, float]:
    """ACC and AUC with MedMNIST's semantics, for per-epoch curves (NaN when undefined)."""
    from medmnist.evaluator import getACC, getAUC

    mtask = TASK_TO_MEDMNIST[task]  # ordinal and multi-class score alike in medmnist
    out = {}
    try:
        out["acc"] = float(getACC(labels, scores, mtask))
    except ValueError:
        out["acc"] = float("nan")
    try:
        out["auc"] = float(getAUC(labels, scores, mtask))
    except ValueError:  # a split with one class present has no AUC
        out["auc"] = float("nan")
    return out


@dataclass
class FitResult:
    status: str  # completed | cancelled
    epochs_done: int
    best_epoch: int | None
    stop_reason: str | None
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains one model on one dataset under one :class:`TrainConfig`.

    Args:
        model: the network (moved to ``device`` here).
        cfg: the settings.
        task: ``binary``, ``multi-class``, ``multi-label`` or ``ordinal``.
        device: where to train.
        callbacks: hooks called during training.
        class_weights: optional (K,) tensor for the loss.
        save_checkpoint: called with ``("best" | "last", state)`` to persist a checkpoint.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, task: str, device: torch.device,
                 train: Batches, val: Batches, callbacks: list[Callback] | None = None,
                 class_weights: torch.Tensor | None = None,
                 save_checkpoint: Callable[[str, dict], None] | None = None,
                 checkpoint_extra: Callable[[], dict] | None = None):
        self.cfg, self.task, self.device = cfg, task, device
        # channels_last: faster convolutions through cuDNN and oneDNN alike (measured on CPU:
        # MedvCNN training steps 1.3-1.5x faster, see BENCHMARKS.md); MPS support is patchy.
        self.channels_last = device.type in ("cuda", "cpu")
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Small splits live on the GPU for the whole run: no host-to-device copy per step.
        self.train = train.to(device) if device.type != "cpu" and train.images.numel() < 2**31 else train
        self.val = val
        self.callbacks = list(callbacks or [])
        cw = class_weights.to(device) if class_weights is not None else None
        self.loss_fn = build_loss(cfg.loss, task, cw, cfg.label_smoothing).to(device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.steps_per_epoch = self._steps_per_epoch(len(train))
        self.schedule = Schedule(cfg, self.optimizer, self.steps_per_epoch)
        self.amp_dtype = training_dtype(device, cfg.precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.aug_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self._save = save_checkpoint
        self._extra = checkpoint_extra or (lambda: {})
        self.should_stop = False
        self.cancelled = False
        self.stop_reason: str | None = None
        self.best_epoch: int | None = None
        self.start_epoch = 1
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.last_val_scores = None  # the last validation's scores, for callbacks (bench selection)
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema else None
        # Several processes (core.train.distributed): train through DDP, agree on stops.
        self.group = distributed.current()
        self.net = self.group.wrap(self.model) if self.group else self.model
        if self.group:
            self.callbacks.append(self.group.callback())
        self.sampler = None
        if cfg.weighted_sampler:
            from core.data import weighted_sampler

            self.sampler = weighted_sampler(train.labels, num_samples=len(train), generator=self.generator)

    def _steps_per_epoch(self, n: int) -> int:
        b = self.cfg.batch_size
        steps = math.ceil(n / b)
        # A last batch of one sample breaks BatchNorm; it is dropped (a different one each epoch).
        if steps > 1 and n % b == 1:
            steps -= 1
        return max(1, steps)

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors and plain values only).

        ``state_dict`` holds the weights that are evaluated: the averaged ones when weight
        averaging is on (the raw ones then go in ``train_state_dict``).
        """
        raw = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        extra = {}
        if self.ema is not None:
            extra = {"train_state_dict": raw, "ema_updates": self.ema.updates}
        return {
            "state_dict": self.ema.state_dict() if self.ema is not None else raw,
            **extra,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
                    "aug_generator": self.aug_generator.get_state()},
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
            "history": self.history,
            **self._extra(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a ``last`` checkpoint written by :meth:`state`."""
        self.model.load_state_dict(state.get("train_state_dict") or state["state_dict"])
        if self.ema is not None:
            self.ema.load_state_dict(state["state_dict"], int(state.get("ema_updates", 0)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state.get("scheduler") or {})
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.start_epoch = self.epoch + 1
        self.global_step = int(state.get("global_step", 0))
        self.best_epoch = state.get("best_epoch")
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.history = list(state.get("history", []))
        rng = state.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "generator" in rng:
            self.generator.set_state(rng["generator"])
        if "aug_generator" in rng:
            self.aug_generator.set_state(rng["aug_generator"])
        cb_states = state.get("callbacks") or {}
        for cb in self.callbacks:
            if type(cb).__name__ in cb_states:
                cb.load_state_dict(cb_states[type(cb).__name__])

    def save(self, which: str) -> None:
        if self._save is not None:
            self._save(which, self.state())

    # ----------------------------------------------------------------- training
    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _epoch_indices(self) -> torch.Tensor:
        n = len(self.train)
        if self.sampler is not None:
            return torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        return torch.randperm(n, generator=self.generator)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns train loss, ACC and AUC."""
        from core.data import augment_batch
        from core.data.augment import without_mirroring
        from core.train.mixup import mix_batch, mixed_loss, mixup_weight

        cfg, model, device = self.cfg, self.model, self.device
        model.train()
        order = self._epoch_indices().to(self.train.images.device)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        all_scores, all_labels = [], []
        for i in range(self.steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            if self.group:
                idx = self.group.share(idx)
            x, y = self.train.get(idx, device, self.channels_last)
            if cfg.augment != "none":
                x = augment_batch(x, cfg.augment if cfg.mirror else without_mirroring(cfg.augment),
                                  generator=self.aug_generator)
            if cfg.mixup:
                lam = mixup_weight(cfg.mixup, cfg.seed, self.global_step)
                x, pair = mix_batch(x, lam, self.aug_generator)
            with _autocast(device, self.amp_dtype):
                logits = self.net(x)
                loss = mixed_loss(self.loss_fn, logits, y, pair, lam) if cfg.mixup else self.loss_fn(logits, y)
                penalty = dense_penalty(model, cfg.l1, cfg.l2)
                total = loss + penalty if penalty is not None else loss
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(model)
            self.schedule.step_batch()
            self.global_step += 1
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
            all_scores.append(scores_from_logits(logits.detach(), self.task))
            all_labels.append(y)
            step_logs = None
            if (i + 1) % cfg.log_every == 0 or i + 1 == self.steps_per_epoch:
                # The only host sync inside an epoch: once every `log_every` steps.
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise TrainingDiverged(
                        f"the loss became {lv} at epoch {epoch}, step {i + 1}; lower the learning rate "
                        f"(for example to {cfg.lr / 10:g}) or turn on gradient clipping, then train again.")
                step_logs = {"kind": "step", "epoch": epoch, "step": self.global_step, "batch": i + 1,
                             "steps_per_epoch": self.steps_per_epoch, "loss": lv, "lr": self.current_lr()}
            self._call("on_step_end", self.global_step, step_logs)
            if self.should_stop and self.cancelled:
                break
        if self.group:
            loss_sum, seen, all_scores, all_labels = self.group.epoch_totals(loss_sum, seen, all_scores, all_labels)
        train_loss = float(loss_sum) / max(1, seen)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"the loss became {train_loss} in epoch {epoch}; lower the learning rate "
                f"(for example to {cfg.lr / 10:g}) and train again.")
        scores = torch.cat(all_scores).float().cpu().numpy()
        labels = torch.cat(all_labels).cpu().numpy()
        m = quick_metrics(scores, labels, self.task)
        return {"train_loss": train_loss, "train_acc": m["acc"], "train_auc": m["auc"]}

    def validate(self) -> dict[str, float]:
        """Loss, ACC and AUC on the validation split (of the averaged weights when on)."""
        if self.ema is not None:
            with self.ema.swapped_in(self.model):
                logits = predict_logits(self.model, self.val, self.device, channels_last=self.channels_last)
        else:
            logits = predict_logits(self.model, self.val, self.device, channels_last=self.channels_last)
        labels = self.val.labels
        with torch.no_grad():
            loss = float(build_loss("auto", self.task)(logits, labels.to(logits.device)))
        scores = scores_from_logits(logits, self.task).numpy()
        self.last_val_scores = scores
        m = quick_metrics(scores, labels.numpy(), self.task)
        return {"val_loss": loss, "val_acc": m["acc"], "val_auc": m["auc"]}

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def fit(self) -> FitResult:
        """Run epochs from ``start_epoch`` to ``cfg.epochs`` (or until a callback stops it)."""
        self._call("on_fit_start")
        for epoch in range(self.start_epoch, self.cfg.epochs + 1):
            self.epoch = epoch
            t0 = time.monotonic()
            self._call("on_epoch_start", epoch)
            lr = self.current_lr()
            logs: dict[str, Any] = self.train_one_epoch(epoch)
            if self.cancelled:
                self.train_seconds += time.monotonic() - t0
                self.epoch = epoch - 1  # the interrupted epoch does not count
                break
            logs.update(self.group.validate(self) if self.group else self.validate())
            self._call("on_validation_end", epoch, logs)
            self.schedule.step_epoch(logs.get("val_loss"))
            self.train_seconds += time.monotonic() - t0
            logs.update({"kind": "epoch", "epoch": epoch, "step": self.global_step, "lr": lr,
                         "epoch_seconds": time.monotonic() - t0, "train_seconds": self.train_seconds})
            self.history.append({k: v for k, v in logs.items() if k != "kind"})
            self._call("on_epoch_end", epoch, logs)
            self.save("last")
            if self.should_stop:
                break
        status = "cancelled" if self.cancelled else "completed"
        self._call("on_fit_end", status)
        return FitResult(status, self.epoch, self.best_epoch, self.stop_reason, self.train_seconds, self.history)
