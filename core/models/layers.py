"""Small building blocks and size arithmetic shared by the model families.

Flatten sizes are computed with :func:`conv_out` / :func:`pool_out` rather than with a
dummy forward pass, so that a reader can check them by hand and so that building a
model never runs BatchNorm on a one-image batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Side length after a convolution.

    Args:
        size: input side length in pixels.
        kernel: kernel side length.
        stride: stride.
        padding: zero padding on each side.

    Returns:
        The output side length, ``(size + 2 * padding - kernel) // stride + 1``.
    """
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int, kernel: int = 2) -> int:
    """Side length after a max-pool whose stride equals its kernel (floor mode).

    Args:
        size: input side length.
        kernel: pooling window (and stride).

    Returns:
        ``size // kernel``.
    """
    return size // kernel


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3, padding: int = 0) -> nn.Sequential:
    """Conv2d (stride 1) -> BatchNorm2d -> ReLU.

    The ReLU is not in-place: Grad-CAM hooks these blocks, and an in-place op after a
    hooked output breaks autograd.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: kernel side length.
        padding: zero padding on each side.

    Returns:
        The three layers as one ``nn.Sequential`` (indices 0, 1, 2).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def conv_relu(in_channels: int, out_channels: int, kernel: int = 3, padding: int = 0) -> nn.Sequential:
    """Conv2d (stride 1) -> ReLU, the Keras ``Conv2D(..., activation='relu')`` idiom.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: kernel side length.
        padding: zero padding on each side.

    Returns:
        The two layers as one ``nn.Sequential``.
    """
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=padding), nn.ReLU())


class BaselineNet(nn.Module):
    """Wraps an ImageNet network (torchvision, timm) so it accepts every studio input.

    Two things happen before the wrapped network sees the batch:

    * an affine per-channel re-normalisation held in buffers (identity unless the
      ImageNet weights expect inputs in [-1, 1]; buffers, not a flag, so that a
      checkpoint restores it even when the model is rebuilt without ``pretrained``);
    * bilinear upsampling to ``min_size`` when the input is smaller, for networks whose
      pooling would shrink a 28 px map to nothing.

    Attributes:
        net: the wrapped network; Grad-CAM paths start with ``net.``.
        min_size: smallest side length the wrapped network accepts.
    """

    def __init__(self, net: nn.Module, in_channels: int, min_size: int = 0) -> None:
        super().__init__()
        self.net = net
        self.min_size = min_size
        self.register_buffer("input_scale", torch.ones(1, in_channels, 1, 1))
        self.register_buffer("input_shift", torch.zeros(1, in_channels, 1, 1))

    def set_input_renormalization(
        self,
        given_mean: tuple[float, ...],
        given_std: tuple[float, ...],
        wanted_mean: tuple[float, ...],
        wanted_std: tuple[float, ...],
    ) -> None:
        """Make the model turn inputs normalised one way into inputs normalised another way.

        For a pixel ``p``: ``x = (p - given_mean) / given_std`` arrives, and
        ``(p - wanted_mean) / wanted_std`` is what the network gets. A grayscale model
        uses the first entry of each tuple, as the data pipeline does.

        Args:
            given_mean: per-channel mean the data pipeline subtracts.
            given_std: per-channel std the data pipeline divides by.
            wanted_mean: per-channel mean the weights were trained with.
            wanted_std: per-channel std the weights were trained with.
        """
        channels = self.input_scale.shape[1]
        gm, gs = torch.tensor(given_mean[:channels]), torch.tensor(given_std[:channels])
        wm, ws = torch.tensor(wanted_mean[:channels]), torch.tensor(wanted_std[:channels])
        with torch.no_grad():
            self.input_scale.copy_((gs / ws).view(1, -1, 1, 1))
            self.input_shift.copy_(((gm - wm) / ws).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.input_scale + self.input_shift
        if min(x.shape[-2:]) < self.min_size:
            x = F.interpolate(x, size=(self.min_size, self.min_size), mode="bilinear", align_corners=False)
        return self.net(x)
