"""Mixup (Zhang et al. 2018): train on blends of two images, with the loss blended alike.

Each step draws ``lam ~ Beta(alpha, alpha)`` and a pairing of the batch with itself; the
network sees ``lam * x + (1 - lam) * x[pair]`` and the loss is ``lam * L(y) + (1 - lam) *
L(y[pair])``, which works for every loss the studio has (cross-entropy, BCE, margin). ``lam``
is folded to at least 0.5, so each blend still mostly shows its own image and the training
accuracy keeps its meaning.

The draw depends on the run's seed and the step number only, so a resumed run blends as the
uninterrupted one would (the pairing comes from the trainer's augmentation generator, whose
state the checkpoints keep).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

def mixup_weight(alpha: float, seed: int, step: int) -> float:
    """``lam`` for one step, in [0.5, 1]: a Beta(alpha, alpha) draw folded onto its upper half."""
    lam = float(np.random.default_rng([int(seed), int(step)]).beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def mix_batch(x: torch.Tensor, lam: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blended images, pairing)``: ``pairing[i]`` is the image blended into image ``i``."""
    pair = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return x * lam + x[pair] * (1.0 - lam), pair


def mixed_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor,
               y: torch.Tensor, pair: torch.Tensor, lam: float) -> torch.Tensor:
    """The loss of a blended batch: each image's two labels weighted as their images were."""
    return loss_fn(logits, y) * lam + loss_fn(logits, y[pair]) * (1.0 - lam)
