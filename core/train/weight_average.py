"""Weight averaging (an exponential moving average of the weights), through timm's
:class:`~timm.utils.ModelEmaV3`.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first ``n`` updates, so a
short run is not dominated by its random initial weights. That is timm's warm-up
``1 - (1 + s / gamma) ** -power`` with ``gamma = 9``, ``power = 1`` and ``s = n + 1``
(timm counts ``s = step - 1``, so update ``n`` is passed as ``step = n + 2``).
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from torch import nn

# (1 + s / 9) ** -1 = 9 / (9 + s), so timm's decay is s / (9 + s) = (1 + n) / (10 + n).
_WARMUP_GAMMA = 9.0
_WARMUP_POWER = 1.0


class WeightAverage:
    """The averaged weights of a model; buffers (BatchNorm statistics, counters) are averaged
    when floating point and copied otherwise, as timm does.

    Args:
        model: the network being trained (its current weights start the average).
        decay: the decay the warm-up rises to, in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        # Imported here: importing timm loads its whole model zoo (seconds), which only runs
        # with weight averaging on should pay for.
        from timm.utils import ModelEmaV3

        extra = {}
        if "stochastic_rounding" in inspect.signature(ModelEmaV3).parameters:  # newer timm releases
            # Plain lerp: stochastic rounding applies to bf16 weights only, which the trainer
            # never holds (autocast keeps the parameters float32).
            extra["stochastic_rounding"] = False
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True, warmup_gamma=_WARMUP_GAMMA,
                              warmup_power=_WARMUP_POWER, **extra)
        self.ema.requires_grad_(False)

    @property
    def shadow(self) -> dict[str, torch.Tensor]:
        """The averaged state dict (live tensors of the averaged copy)."""
        return self.ema.module.state_dict()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (one optimiser step)."""
        self.updates += 1
        self.ema.update(model, step=self.updates + 2)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights as CPU copies (what a checkpoint's ``state_dict`` holds)."""
        return {k: v.detach().cpu().clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Continue an average saved by :meth:`state_dict` after ``updates`` updates."""
        shadow = self.shadow
        with torch.no_grad():
            for k, v in state.items():
                shadow[k].copy_(v)
        self.updates = updates

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module):
        """Run the model with the averaged weights inside the block, then put the raw ones back."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(raw)
