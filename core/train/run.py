"""The one entry point that trains a run: the worker process and ``python -m core train``
both call :func:`run_training`, so the browser and the command line cannot drift apart.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

import numpy as np
import torch

import core.train.distributed as distributed
from core.train.batch_plan import AUTO_BATCH, plan_batch
from core.train.callbacks import (BestCheckpoint, Dwell, EarlyStopping, Reporter, StopOnRequest,
                                  TimeBudget)
from core.train.config import TrainConfig
from core.train.device import pick_device, planned_precision, training_precision
from core.train.evaluation import final_evaluation
from core.train.progress import stop_record, time_left
from core.train.trainer import Trainer, make_batches

CHECKPOINT_FORMAT = "studio-checkpoint-v1"
META_EVERY_SECONDS = 1.0  # progress in meta.json is refreshed at most this often


def _laterality(cfg: TrainConfig, data, sample: Callable[[], Any]) -> tuple[Any, Any]:
    """Whether this run may mirror its images, and the image check that decided it (or None).

    The class names and the person's mark come first (core.data.laterality); when neither
    settles it and the recipe would mirror (flips or turns, or test-time flips), the training
    images are checked (core.data.mirror_check); ``sample()`` gives the checks' shared sample.
    """
    from core.data.augment import augment_spec, without_mirroring
    from core.data.laterality import Laterality, dataset_laterality
    from core.data.mirror_check import check_mirroring

    side = dataset_laterality(cfg.dataset, data.class_names)
    would_mirror = cfg.mirror and (cfg.tta or without_mirroring(cfg.augment) != augment_spec(cfg.augment))
    if side.side_matters or side.source == "marked" or not would_mirror or not cfg.mirror_check:
        return side, None
    check = check_mirroring(data.images["train"], data.labels["train"], seed=cfg.seed, sample=sample())
    if check.changes_class:
        side = Laterality(True, "images", note=check.summary())
    return side, check


def _turns(cfg: TrainConfig, data, sample: Callable[[], Any]) -> tuple[TrainConfig, Any]:
    """``flipshift`` becomes ``turns`` when the training images have no up or down
    (core.data.turn_check); the check (or None when it was not asked for) comes back too.

    Only for a run that may mirror (turns include mirror images) and that asked for the check
    (``turn_check``, on in the default recipe). The run's checkpoint records the augmentation
    it used; params.json keeps what was asked.
    """
    import dataclasses

    from core.data.turn_check import check_turns

    if not (cfg.turn_check and cfg.mirror and cfg.augment == "flipshift"):
        return cfg, None
    check = check_turns(data.images["train"], data.labels["train"], seed=cfg.seed, sample=sample())
    return (dataclasses.replace(cfg, augment="turns") if check.allows_turns else cfg), check


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_params(cfg: TrainConfig) -> dict[str, Any]:
    """What goes into ``params.json``: the settings and the versions that produced the run."""
    import platform

    import torchvision

    import core
    from core.data.laterality import spec_laterality

    side = spec_laterality(cfg.dataset)  # None when the names need the dataset loaded
    return {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "image_size": cfg.image_size,
        "recipe": cfg.recipe,
        "seed": cfg.seed,
        # What 'auto' precision means where the run is planned (bf16 on CUDA and on CPUs with
        # bf16 units); the trainer records what it used in meta.json.
        "precision": _planned_precision(cfg),
        "config": cfg.to_dict(),
        # Known when queued; training decides again from the loaded class names and records
        # the outcome in the checkpoint (and meta.json), which inference reads.
        "laterality": side.to_dict() if side is not None else None,
        "versions": {"studio": core.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "python": platform.python_version()},
    }


def _planned_precision(cfg: TrainConfig) -> str:
    from core.models import list_classical

    if cfg.model in list_classical():
        return "fp32"
    planned = planned_precision(cfg.device, cfg.precision)
    return planned[1] if planned is not None else cfg.precision  # else the worker decides


def run_training(run, store, progress: Callable[[dict], None] | None = None,
                 extra_callbacks: list | None = None) -> dict[str, Any]:
    """Train (or resume) ``run`` and write its checkpoints, metrics, evaluation and predictions.

    Args:
        run: a run directory object (the run store's ``Run``) whose ``params.json`` holds ``config``.
        store: the run store that owns it.
        progress: optional callback with each step/epoch record (the CLI's progress bar).
        extra_callbacks: trainer callbacks called after the run's own (benchmarks that record
            what happens inside training, such as ``bench selection``).

    Returns:
        The final ``meta.json`` fields written, plus ``"status"``: ``"completed"`` or
        ``"cancelled"``, how training ended, which the job runner's worker
        records with the finishing time. Training never writes the run's status or times.
    """
    import dataclasses
    import functools

    from core.data import class_weights as compute_class_weights
    from core.data import load_dataset
    from core.data.mirror_check import draw_sample
    from core.fit_check import training_image_stats
    from core.models import create_model, list_classical, model_info

    cfg = TrainConfig.from_dict(run.params()["config"])
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    # Status, pid and times are the job runner's worker's to record; training reports.
    store.update_meta(run.id, device=str(device))

    data = load_dataset(cfg.dataset, size=cfg.image_size, data_dir=cfg.data_dir, seed=cfg.data_seed)
    if cfg.model in list_classical():
        from core.train.classical_run import run_classical

        return run_classical(run, store, cfg, data)

    # Left and right: data whose classes name a side is never mirrored, neither by the
    # augmentation nor by test-time flips (core.data.laterality); the checkpoint says so.
    # The mirror and turn checks read one sample of the training images, drawn when first needed.
    sample = functools.cache(lambda: draw_sample(data.images["train"], data.labels["train"], seed=cfg.seed))
    side, mirror_check = _laterality(cfg, data, sample)
    if side.side_matters:
        cfg = dataclasses.replace(cfg, mirror=False, tta=False)
    cfg, turn_check = _turns(cfg, data, sample)
    # What the training images look like, so Classify can warn about uploads unlike them.
    train_stats = training_image_stats(data.images["train"])
    # A recipe that leaves the batch to the data (the default) gets it now that the number of
    # training images is known (core.train.batch_plan); a resumed run derives the same one.
    plan = None
    if cfg.batch_size == AUTO_BATCH:
        plan = plan_batch(int(data.images["train"].shape[0]), cfg.epochs, cfg.max_minutes)
        cfg = dataclasses.replace(cfg, batch_size=plan.batch_size)

    info = model_info(cfg.model, data.channels, data.num_classes, cfg.image_size)
    mean, std = info.normalization(cfg.pretrained)
    model = create_model(cfg.model, data.channels, data.num_classes, cfg.image_size, pretrained=cfg.pretrained)
    train = make_batches(data.images["train"], data.labels["train"], mean, std)
    val = make_batches(data.images["val"], data.labels["val"], mean, std)
    weights = compute_class_weights(data.labels["train"], data.num_classes) if cfg.class_weights else None

    base = {
        "format": CHECKPOINT_FORMAT,
        "model_name": cfg.model,
        "model_args": {"in_channels": data.channels, "num_classes": data.num_classes,
                       "image_size": cfg.image_size, "pretrained": bool(cfg.pretrained)},
        "class_names": list(data.class_names),
        "task": data.task,
        "mean": [float(m) for m in list(mean)[:data.channels]],
        "std": [float(s) for s in list(std)[:data.channels]],
        "config": cfg.to_dict(),
        "laterality": side.to_dict(),
        "train_stats": train_stats,
    }
    store.update_meta(run.id, params_count=info.params, task=data.task, class_names=list(data.class_names),
                      n_train=len(train), n_val=len(val), n_test=int(data.images["test"].shape[0]),
                      precision=training_precision(device, cfg.precision),
                      laterality=side.to_dict(), train_stats=train_stats,
                      mirror_check=mirror_check.to_dict() if mirror_check is not None else None,
                      turn_check=turn_check.to_dict() if turn_check is not None else None,
                      batch_plan=plan.to_dict() if plan is not None else None)

    tracker = _ProgressTracker(run, store, cfg, progress)
    callbacks = [
        BestCheckpoint(cfg.monitor, save=lambda which: trainer.save(which)),
        StopOnRequest(run.cancel_requested),
        Reporter(on_step=tracker.step, on_epoch=tracker.epoch),
    ]
    if cfg.early_stopping:
        callbacks.insert(1, EarlyStopping(cfg.monitor, cfg.early_stopping))
    if cfg.dwell:
        callbacks.append(Dwell())
    if cfg.max_minutes:
        tracker.budget = TimeBudget(cfg.max_minutes)
        callbacks.append(tracker.budget)
    callbacks += list(extra_callbacks or [])
    trainer = Trainer(model, cfg, data.task, device, train, val, callbacks, weights,
                      save_checkpoint=lambda which, state: run.save_checkpoint(which, {**state, **base}))
    tracker.trainer = trainer
    if run.last_checkpoint.exists():
        trainer.load_state(run.load_checkpoint("last"))
        store.update_meta(run.id, resumed_from_epoch=trainer.epoch)

    result = trainer.fit()
    final = {"epochs_done": result.epochs_done, "best_epoch": result.best_epoch,
             "train_seconds": round(result.train_seconds, 3), "stop_reason": result.stop_reason,
             "stop": stop_record(result.status, result.epochs_done, cfg.epochs, getattr(trainer, "stop_kind", None),
                                 max_minutes=cfg.max_minutes, patience=cfg.early_stopping, monitor=cfg.monitor,
                                 best_epoch=result.best_epoch)}
    if result.status == "cancelled":
        store.update_meta(run.id, **final)
        return {**final, "status": "cancelled"}
    if not distributed.is_main():  # on several processes, rank 0 alone evaluates and writes
        return final

    final.update(final_evaluation(run, trainer.model, data, cfg, device))
    final.update(progress=1.0, eta_seconds=0)
    store.update_meta(run.id, **final)
    return {**final, "status": "completed"}


class _ProgressTracker:
    """Writes step/epoch lines to metrics.jsonl and a throttled progress summary to meta.json."""

    def __init__(self, run, store, cfg: TrainConfig, progress: Callable[[dict], None] | None):
        self.run, self.store, self.cfg, self.progress = run, store, cfg, progress
        self.trainer: Trainer | None = None
        self.t0 = time.monotonic()
        self.last_meta = 0.0
        self.done_at_start: float | None = None
        self.budget: TimeBudget | None = None  # the time limit, when the run has one

    def _fraction(self, epoch: int, batch: int, steps: int) -> float:
        return min(1.0, ((epoch - 1) + batch / max(1, steps)) / self.cfg.epochs)

    def _meta(self, record: dict, fraction: float, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.last_meta < META_EVERY_SECONDS:
            return
        self.last_meta = now
        if self.done_at_start is None:
            self.done_at_start = fraction
        # The sooner of the epochs still to go and the time limit (core.train.progress).
        spent = self.budget.state_dict()["spent"] if self.budget is not None and self.budget.start else None
        eta = time_left(fraction, self.done_at_start, now - self.t0, self.cfg.epochs,
                        self.budget.seconds if self.budget is not None else None, spent)
        fields = {"epoch": record["epoch"], "epochs": self.cfg.epochs, "progress": round(fraction, 4),
                  "eta_seconds": round(eta, 1) if eta is not None else None, "lr": record.get("lr"),
                  "time_limit_minutes": self.cfg.max_minutes or None}
        for key in ("val_loss", "val_acc", "val_auc", "train_loss"):
            if key in record:
                fields[f"last_{key}"] = record[key]
        self.store.update_meta(self.run.id, **fields)

    def step(self, record: dict) -> None:
        record = {**record, "time": round(time.time(), 3)}
        self.run.append_metrics(record)
        self._meta(record, self._fraction(record["epoch"], record["batch"], record["steps_per_epoch"]), False)
        if self.progress:
            self.progress(record)

    def epoch(self, logs: dict) -> None:
        record = {k: (None if isinstance(v, float) and v != v else v) for k, v in logs.items()}
        record["time"] = round(time.time(), 3)
        self.run.append_metrics(record)
        self.store.update_meta(self.run.id, epochs_done=record["epoch"])
        self._meta(record, self._fraction(record["epoch"], 1, 1), True)
        if self.progress:
            self.progress(record)
