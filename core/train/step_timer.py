"""How long a training step takes here, measured with the real :class:`~core.train.trainer.Trainer`.

The Train page's time-per-epoch estimate (``studio/time_estimate.py``) times a few steps of
the chosen model on random images before any run exists. The steps are the trainer's own
(:meth:`Trainer.train_one_epoch` on a split of one batch: the same loss, optimiser, mixed
precision, memory format and per-epoch metrics a run uses), so the estimate cannot drift
from what training does.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from core.train.config import TrainConfig
from core.train.trainer import Trainer, make_batches

HEAVY_STEP_S = 1.0  # a probe step slower than this skips the second, larger probe
_PROBE = {28: 64, 64: 32, 128: 16}  # the larger probe batch per image size (8 above)


def measure_train_step(model_name: str, image_size: int, channels: int, num_classes: int,
                       batch_size: int, device: str = "cpu", task: str = "multi-class") -> tuple[float, float]:
    """Time training steps of a model on random data: seconds per step = a + b * images.

    A step has a fixed cost (launching every layer, synchronising threads; large on a busy
    CPU) and a cost per image, so the model is timed at two batch sizes and the line
    through them is extrapolated to the real batch. The larger probe batch shrinks with the
    image size, and is skipped at 128 px and more when the small one is already slow, so
    even VGG-16 at 224 px on a CPU costs only a few steps.

    Args:
        model_name: a registered model (:func:`core.models.create_model`).
        image_size: image side in pixels.
        channels: 1 or 3.
        num_classes: classes (labels, for multi-label).
        batch_size: the run's batch; the probes are no larger.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``mps``.
        task: decides the loss, as in a run (cross-entropy, or BCE for multi-label).

    Returns:
        ``(a, b)``: fixed seconds per step and seconds per image (both >= 0).
    """
    from core.models import create_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(model_name, channels, num_classes, image_size)
    probe = _Probe(model, model_name, image_size, channels, num_classes, dev, task)
    large = min(batch_size, _PROBE.get(image_size, 8))
    small = min(large, 2)
    t_small = probe.step_seconds(small)
    if small == large or (image_size >= 128 and t_small > HEAVY_STEP_S):
        # Large images and an already slow step: the per-image cost dominates, and a second
        # probe would keep the page waiting.
        return 0.0, t_small / small
    t_large = probe.step_seconds(large)
    per_image = max((t_large - t_small) / (large - small), 0.0)
    fixed = max(t_small - per_image * small, 0.0)
    if per_image == 0.0:  # noise swamped the difference: charge it all per image
        per_image, fixed = t_large / large, 0.0
    return fixed, per_image


class _Probe:
    """One model, timed through a :class:`Trainer` whose training split is one batch."""

    def __init__(self, model: torch.nn.Module, model_name: str, image_size: int, channels: int,
                 num_classes: int, device: torch.device, task: str):
        self.model, self.device, self.task = model, device, task
        self.shape = (channels, image_size, image_size)
        self.num_classes = num_classes
        self.cfg = TrainConfig(dataset="step-timer", model=model_name, image_size=image_size, epochs=1,
                               device=str(device), log_every=1)
        self.generator = torch.Generator().manual_seed(0)

    def _batches(self, n: int):
        images = torch.randint(0, 256, (n, *self.shape), dtype=torch.uint8, generator=self.generator)
        if self.task == "multi-label":
            labels = torch.randint(0, 2, (n, self.num_classes), generator=self.generator).float()
        else:
            labels = torch.randint(0, self.num_classes, (n,), generator=self.generator)
        return make_batches(images, labels, (0.5,) * 3, (0.5,) * 3)

    def step_seconds(self, n: int, repeats: int = 1) -> float:
        """Mean seconds of one training step of ``n`` images (the first, warm-up step of a
        shape is not counted)."""
        data = self._batches(n)
        trainer = Trainer(self.model, self.cfg.replace(batch_size=n), self.task, self.device, data, data)
        times = []
        for epoch in range(1, repeats + 2):
            t0 = time.perf_counter()
            trainer.train_one_epoch(epoch)  # one step: the split is one batch
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - t0)
        return float(np.mean(times[1:]))


def epoch_seconds(cost: tuple[float, float], batch_size: int, n_train: int, n_val: int) -> float:
    """Seconds of one epoch at a measured step cost.

    Args:
        cost: ``(fixed, per image)`` from :func:`measure_train_step`.
        batch_size: the run's batch.
        n_train: training images.
        n_val: validation images.

    Returns:
        Training steps at the measured cost, plus validation (a forward pass: about a third
        of a training step, in batches of 512).
    """
    fixed, per_image = cost
    train = math.ceil(n_train / max(1, batch_size)) * (fixed + per_image * batch_size)
    val = (math.ceil(n_val / 512) * fixed + per_image * n_val) / 3.0
    return train + val
