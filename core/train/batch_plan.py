"""The batch size the default recipe derives from the data and the budget.

A fixed batch of 128 gives a few hundred training images five optimiser steps an epoch: four
epochs on breastmnist (546 images) were twenty steps and a test AUC of 0.705, where a batch of
16 reached 0.835 in the same seconds (issue notes, 2-core CPU). Small data and short budgets
need small batches (many steps); large data keeps the large batch, which is faster per image.

A recipe asks for this by setting ``batch_size`` to :data:`AUTO_BATCH` (0); the trainer
resolves it once the dataset is loaded, and the run records what was chosen and why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

AUTO_BATCH = 0
# Powers of two between these bounds: below 16 batch norm statistics get noisy and a CPU
# step costs nearly as much as at 16; above 128 the images per second barely grow here.
MIN_BATCH = 16
MAX_BATCH = 128
# Every epoch should be at least this many steps, so that the one-cycle schedule and the
# weight average have something to work with inside one epoch.
MIN_STEPS_PER_EPOCH = 32
# With a budget in epochs, the batch shrinks (down to MIN_BATCH) until the whole run has at
# least this many optimiser steps.
TARGET_STEPS = 1000


@dataclass(frozen=True)
class BatchPlan:
    """What :func:`plan_batch` chose.

    Attributes:
        batch_size: images per optimiser step.
        steps_per_epoch: optimiser steps in one pass over the training images.
        total_steps: steps of the whole run, or None when a time limit decides its length.
        reason: one sentence for the Train page and the run's record.
    """

    batch_size: int
    steps_per_epoch: int
    total_steps: int | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _powers() -> list[int]:
    out, b = [], MAX_BATCH
    while b >= MIN_BATCH:
        out.append(b)
        b //= 2
    return out  # largest first


def plan_batch(n_train: int, epochs: int, max_minutes: float = 0.0) -> BatchPlan:
    """The batch size for ``n_train`` training images and a budget of epochs or minutes.

    The largest power of two in [16, 128] that still gives every epoch at least 32 steps and,
    when the budget is a number of epochs (no time limit), the whole run at least 1,000 steps.
    With a time limit the run takes as many epochs as fit, so only the per-epoch rule applies
    and the schedule's length follows the clock (``core.train.optim``).

    Args:
        n_train: training images.
        epochs: the epoch budget (the cap, when ``max_minutes`` is set).
        max_minutes: the wall-clock budget; 0 means none.

    Returns:
        The :class:`BatchPlan`.
    """
    n_train, epochs = max(1, int(n_train)), max(1, int(epochs))
    timed = bool(max_minutes and max_minutes > 0)
    chosen = MIN_BATCH
    for b in _powers():
        steps = math.ceil(n_train / b)
        if steps < MIN_STEPS_PER_EPOCH:
            continue
        if not timed and steps * epochs < TARGET_STEPS:
            continue
        chosen = b
        break
    steps = math.ceil(n_train / chosen)
    total = None if timed else steps * epochs
    if chosen == MAX_BATCH:
        why = f"{n_train:,} training images are enough for the full batch of {MAX_BATCH}"
    elif timed:
        why = f"{n_train:,} training images: a batch of {chosen} gives {steps} learning steps per epoch"
    else:
        why = (f"{n_train:,} training images x {epochs} epochs: a batch of {chosen} gives "
               f"{steps * epochs:,} learning steps in all")
    return BatchPlan(chosen, steps, total, why + ".")
