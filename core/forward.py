"""The arithmetic around a forward pass, in one place: normalising uint8 images, logits with
mirror-image (flip) averaging, and logits -> probabilities by task.

Training, evaluation, the Classify page, ``python -m core predict``, Monte-Carlo dropout and
temperature scaling all call these, so a probability means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from core.errors import StudioError


def normalization(mean: Sequence[float], std: Sequence[float], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` that :func:`normalize` applies.

    Args:
        mean: per-channel means of pixels scaled to [0, 1] (only the first ``channels`` are used).
        std: per-channel standard deviations, likewise.
        channels: the images' channel count C.

    Returns:
        ``scale = 1 / (255 * std)`` and ``shift = mean / std``, each float32 (1, C, 1, 1), so
        that ``x * scale - shift == (x / 255 - mean) / std`` in one multiply and one subtract.
    """
    mean_t = torch.tensor(list(mean)[:channels], dtype=torch.float32).view(1, channels, 1, 1)
    std_t = torch.tensor(list(std)[:channels], dtype=torch.float32).view(1, channels, 1, 1)
    return 1.0 / (255.0 * std_t), mean_t / std_t


def normalize(images_u8: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` on the images' device.

    Args:
        images_u8: the batch (any integer or float dtype holding 0..255 values).
        scale, shift: from :func:`normalization`.
    """
    device = images_u8.device
    return images_u8.float().mul_(scale.to(device)).sub_(shift.to(device))


def mirror(x: torch.Tensor) -> torch.Tensor:
    """The batch's horizontal mirror image (flip of the width, dimension 3 of (N, C, H, W))."""
    return torch.flip(x, dims=[3])


def forward_logits(model: nn.Module, x: torch.Tensor, tta: bool = False,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The model's logits for a normalised batch, optionally averaged with its mirror image.

    Args:
        model: a classifier returning one (B, K) tensor of logits.
        x: the normalised batch.
        tta: test-time augmentation: the mean of the logits of ``x`` and of :func:`mirror` ``(x)``.
        dtype: the logits' dtype (float32; float64 where probabilities are averaged over passes).

    Returns:
        (B, K) logits of ``dtype`` on the model's device.

    Raises:
        StudioError: the model returns something other than one 2-D tensor.
    """
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise StudioError("The model must return one (batch, classes) tensor of logits; "
                          "wrap it so that its forward returns only the logits.")
    logits = logits.to(dtype)
    if tta:
        logits = 0.5 * (logits + model(mirror(x)).to(dtype))
    return logits


def scores_from_logits(logits, task: str, temperature: float = 1.0):
    """Probabilities from logits: one sigmoid per label for "multi-label", a softmax over the
    classes for every other task, after dividing by ``temperature``.

    Args:
        logits: (N, K) torch tensor or numpy array (or nested lists).
        task: the task name (core.vocab.TASKS).
        temperature: the calibration temperature (> 0); 1 leaves the logits as they are.

    Returns:
        A torch tensor for a torch input (float64 stays float64, anything else becomes
        float32); a float64 numpy array otherwise.
    """
    if not isinstance(logits, torch.Tensor):
        z = torch.from_numpy(np.asarray(logits, dtype=np.float64))
        return scores_from_logits(z, task, temperature).numpy()
    z = logits if logits.dtype == torch.float64 else logits.float()
    z = z / temperature
    return torch.sigmoid(z) if task == "multi-label" else torch.softmax(z, dim=1)
