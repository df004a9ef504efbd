"""What a built network is like, measured on the network itself: its trainable parameter
count, whether Monte-Carlo dropout can vary its outputs, and its inference latency.

The registry's info record (:func:`core.models.model_info`), a run's final evaluation
(latency) and Monte-Carlo dropout on the Classify page ask these functions, so they cannot
disagree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from core.errors import StudioError


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (those with requires_grad).

    Args:
        model: a torch module.

    Returns:
        The count as an int; a frozen backbone's weights are not counted.
    """
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str = "cpu",
    repeats: int = 50,
    warmup: int = 5,
) -> dict:
    """Inference time per image at batch size 1.

    The model runs in eval mode under torch.inference_mode on one fixed random input
    (seeded, so every call times the same work); the first ``warmup`` passes are not timed
    because they pay for lazy initialisation and allocator warm-up. On CUDA each pass is
    synchronised so the timer sees the kernel, not just its launch. The model's mode and
    device are restored afterwards.

    Args:
        model: a torch module.
        input_shape: shape of one input without the batch dimension, e.g. (3, 28, 28).
        device: "cpu", "cuda" or "cuda:N".
        repeats: timed passes (>= 1).
        warmup: untimed passes before them (>= 0).

    Returns:
        {"median_ms", "p95_ms", "batch_size": 1, "repeats", "device"}.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise StudioError(
            f"The input shape must be positive sizes without the batch dimension, got {tuple(input_shape)}."
        )
    if repeats < 1 or warmup < 0:
        raise StudioError(f"Latency needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"Device '{device}' was asked for but no CUDA GPU is available; use 'cpu'.")
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0)).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times = []
    try:
        model.to(dev).eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        model.to(home)
        model.train(was_training)
    return {
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "batch_size": 1,
        "repeats": int(repeats),
        "device": str(dev),
    }


def is_dropout(module: nn.Module) -> bool:
    """Whether a module randomly drops units in train mode with a non-zero rate."""
    if isinstance(module, nn.modules.dropout._DropoutNd):  # Dropout, Dropout1d/2d/3d, AlphaDropout, ...
        return module.p > 0
    # An RNN's inter-layer dropout acts only between stacked layers and only in train mode.
    if isinstance(module, nn.RNNBase):
        return module.dropout > 0 and module.num_layers > 1
    return False


def has_dropout(model: nn.Module) -> bool:
    """Whether MC dropout can vary this model's outputs.

    Args:
        model: a torch module.

    Returns:
        True if the model holds an nn.Dropout-family module with p > 0, or a stacked
        RNN/LSTM/GRU with inter-layer dropout > 0. Dropout called functionally inside a
        forward (F.dropout(..., training=self.training)) cannot be seen and is not counted.
    """
    return any(is_dropout(m) for m in model.modules())
