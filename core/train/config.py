"""Training settings as one frozen dataclass, saved into the run directory.

Every value a person can change on the Train page or with ``python -m core train`` is a
field here; :func:`validate` refuses out-of-range values before any job starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.vocab import IMAGE_SIZES

if TYPE_CHECKING:
    from core.limits import Limits

OPTIMIZERS = ("sgd", "adam", "adamw", "adamax", "rmsprop")
SCHEDULES = ("none", "step", "multistep", "cosine", "onecycle", "plateau")
LOSSES = ("auto", "ce", "bce", "margin")
MONITORS = ("val_loss", "val_auc", "val_acc")
DEVICES = ("auto", "cpu", "cuda", "mps")
# auto: mixed precision where the hardware computes it natively: CUDA (bf16, or fp16 with loss
# scaling) and a CPU with AMX / AVX-512 BF16 units (bf16); fp32 elsewhere
# (core.train.device.training_precision). bf16: ask for it (refused where it is not native).
PRECISIONS = ("auto", "fp32", "bf16")

# Caps that keep a mistyped value from starting a week-long job; the demo mode lowers them
# further (core.limits).
MAX_EPOCHS = 500
MAX_BATCH = 4096


#: The largest mixup alpha accepted: at 0.2-0.4 mixup regularises; far above 1 nearly every
#: blend is half and half (core.train.mixup).
MIXUP_MAX_ALPHA = 4.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run.

    The recipe fills these; a person may override any of them. Values are plain so that
    ``dataclasses.asdict`` is what goes into ``params.json``.
    """

    dataset: str
    model: str
    image_size: int = 28
    recipe: str = "default"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD and RMSprop only
    weight_decay: float = 0.0  # decoupled for AdamW, L2 in the update for the others
    schedule: str = "none"
    # step: decay by `gamma` every `step_size` epochs; multistep: at these fractions of training
    step_size: int = 10
    gamma: float = 0.1
    milestones: tuple[float, ...] = (0.5, 0.75)
    loss: str = "auto"  # auto: cross-entropy, or BCE-with-logits for multi-label
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 turns it off
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) parameter (pairs of images blended); 0 turns it off
    class_weights: bool = False
    weighted_sampler: bool = False
    augment: str = "none"
    l1: float = 0.0  # penalties on the dense (Linear) layers' weights, as seed 001 does
    l2: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
    monitor: str = "val_loss"  # which validation metric picks the best checkpoint
    early_stopping: int = 0  # patience in epochs; 0 turns it off
    dwell: bool = False  # seed 001: restore the previous weights when val loss does not improve
    plateau_patience: int = 1
    plateau_factor: float = 0.5
    tta: bool = False  # average predictions over horizontal flips at evaluation
    # Left-right flips and turns allowed in augmentation (and tta). The trainer sets it off
    # for data whose classes name a side (core.data.laterality): mirroring swaps them.
    mirror: bool = True
    # Before mirroring, check on the training images that a mirror image keeps its class
    # (core.data.mirror_check); False trusts the recipe's flips without looking.
    mirror_check: bool = True
    # With the ``flipshift`` augmentation: check on the training images whether they have an up
    # and a down (core.data.turn_check); when they do not, train on every turn and mirror
    # image instead (the ``turns`` preset). The default recipe turns it on.
    turn_check: bool = False
    seed: int = 0
    # Seed of a folder's train/val/test split when it has no split of its own; None: ``seed``.
    # Runs that differ only in their weights (Auto's final runs) share one split this way.
    split_seed: int | None = None
    device: str = "auto"
    precision: str = "auto"  # see PRECISIONS; fp32 gives the same numbers on every CPU
    pretrained: bool = False
    max_minutes: float = 0.0  # wall-clock budget; 0 means no budget
    log_every: int = 20  # steps between step-level lines in metrics.jsonl
    data_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # recipe notes, not used by the trainer

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from ``to_dict`` output, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "milestones" in kw:
            kw["milestones"] = tuple(kw["milestones"])
        return cls(**kw)

    @property
    def data_seed(self) -> int:
        """The seed that draws a folder's split: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} '{value}' is not offered; choose one of: {', '.join(allowed)}.")


def validate(cfg: TrainConfig, max_epochs: int = MAX_EPOCHS, limits: "Limits | None" = None) -> TrainConfig:
    """Refuse settings that cannot train, with a sentence that says what to change.

    Args:
        cfg: the settings.
        max_epochs: the cap on epochs.
        limits: the hosted demo's limits (epochs, image sizes, dataset size); defaults to
            :func:`core.limits.current_limits`, so ``STUDIO_DEMO=1`` applies to the pages
            and the command line alike.

    Returns:
        ``cfg`` unchanged when it is valid.

    Raises:
        ConfigError: the first problem found.
    """
    from core.limits import check_dataset_size, current_limits

    limits = limits or current_limits()
    # A hand-edited params.json or a script may pass text or None; say so instead of a TypeError.
    for name in ("epochs", "batch_size", "step_size", "early_stopping", "plateau_patience", "seed", "log_every"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name.replace('_', ' ')} must be a whole number (got {value!r}).")
    if cfg.split_seed is not None and (isinstance(cfg.split_seed, bool) or not isinstance(cfg.split_seed, int)):
        raise ConfigError(f"split seed must be a whole number or empty (got {cfg.split_seed!r}).")
    for name in ("lr", "momentum", "gamma", "plateau_factor", "weight_decay", "l1", "l2", "grad_clip",
                 "label_smoothing", "max_minutes", "ema", "mixup"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            label = "learning rate" if name == "lr" else name.replace("_", " ")
            raise ConfigError(f"{label} must be a finite number (got {value!r}).")
    if cfg.image_size not in IMAGE_SIZES:
        raise ConfigError(
            f"image size {cfg.image_size} is not offered; choose one of {', '.join(map(str, IMAGE_SIZES))}."
        )
    if limits.image_sizes is not None and cfg.image_size not in limits.image_sizes:
        raise ConfigError(
            f"image size {cfg.image_size} is not offered in this demo; choose one of "
            f"{', '.join(map(str, limits.image_sizes))}."
        )
    if isinstance(cfg.epochs, bool) or not isinstance(cfg.epochs, int) or cfg.epochs < 1:
        raise ConfigError(f"epochs must be at least 1 (got {cfg.epochs}).")
    if cfg.epochs > max_epochs:
        raise ConfigError(f"epochs must be at most {max_epochs} (got {cfg.epochs}); train in several runs or lower it.")
    if limits.max_epochs is not None and cfg.epochs > limits.max_epochs:
        raise ConfigError(f"epochs must be at most {limits.max_epochs} in this demo (got {cfg.epochs}); lower it.")
    # 0 leaves the batch to the data (core.train.batch_plan), as the default recipe does.
    if not isinstance(cfg.batch_size, int) or not 0 <= cfg.batch_size <= MAX_BATCH:
        raise ConfigError(f"batch size must be between 1 and {MAX_BATCH}, or 0 to let the recipe choose "
                          f"(got {cfg.batch_size}).")
    if not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and 0 < cfg.lr <= 10):
        raise ConfigError(f"learning rate must be a number above 0 and at most 10 (got {cfg.lr}); 0.001 is a safe start.")
    for name in ("weight_decay", "l1", "l2", "grad_clip", "label_smoothing", "max_minutes", "mixup"):
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name.replace('_', ' ')} must be zero or a positive number (got {v}).")
    if not 0 <= cfg.ema < 1:
        raise ConfigError(f"weight averaging (ema) must be 0 (off) or between 0 and 1 (got {cfg.ema}); 0.999 is typical.")
    if cfg.mixup > MIXUP_MAX_ALPHA:
        raise ConfigError(f"mixup must be 0 (off) or at most {MIXUP_MAX_ALPHA:g} (got {cfg.mixup}); 0.2 is typical.")
    if cfg.label_smoothing >= 1:
        raise ConfigError(f"label smoothing must be below 1 (got {cfg.label_smoothing}); 0.05 is typical.")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1) (got {cfg.momentum}).")
    if cfg.early_stopping < 0:
        raise ConfigError(f"early-stopping patience must be 0 (off) or more epochs (got {cfg.early_stopping}).")
    if cfg.step_size < 1 or not 0 < cfg.gamma <= 1:
        raise ConfigError("step schedule needs a step size of at least 1 epoch and a decay factor in (0, 1].")
    if any(not 0 < m < 1 for m in cfg.milestones):
        raise ConfigError("multistep milestones are fractions of training between 0 and 1, such as 0.5 and 0.75.")
    if cfg.log_every < 1:
        raise ConfigError("log_every must be at least 1 step.")
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("schedule", cfg.schedule, SCHEDULES)
    _choice("loss", cfg.loss, LOSSES)
    _choice("monitor", cfg.monitor, MONITORS)
    _choice("device", cfg.device, DEVICES)
    _choice("precision", cfg.precision, PRECISIONS)
    if cfg.precision == "bf16":
        from core.train.device import amp_dtype, pick_device

        amp_dtype(pick_device(cfg.device), "bf16")  # raises where this machine has no bf16 units
    from core.data import AUGMENT_PRESETS  # late: the data layer imports torch

    _choice("augmentation preset", cfg.augment, tuple(AUGMENT_PRESETS))
    if limits.max_images is not None:  # the policy judges; the data layer counts (up to one past the cap)
        from core.data.catalogue import count_dataset_images

        check_dataset_size(cfg.dataset, count_dataset_images(cfg.dataset, stop_after=limits.max_images + 1), limits)
    from core.data.split_check import check_folder_splittable

    check_folder_splittable(cfg.dataset)  # too few images per class: refuse before a run is queued
    return cfg
