"""S-Net (seed 002, section 4.3): three conv/pool stages, two dense layers and an LSTM."""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import conv_out, conv_relu, pool_out
from core.models.registry import no_pretrained_weights, register_model


class SNet(nn.Module):
    """Conv 32/64/128 (3x3, unpadded, ReLU, pool 2) -> 128 -> 64 -> LSTM(32) -> classes.

    Our reading of the LSTM: the 64-vector is a sequence of 8 steps of 8 features and the
    last hidden state feeds the classifier. Convolutions are unpadded (Keras' default).

    Args:
        in_channels: image channels.
        num_classes: output logits.
        image_size: input side length.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.conv1 = conv_relu(in_channels, 32)
        self.conv2 = conv_relu(32, 64)
        self.conv3 = conv_relu(64, 128)
        self.pool = nn.MaxPool2d(2)
        side = image_size
        for _ in range(3):
            side = pool_out(conv_out(side, 3))
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
        )
        self.lstm = nn.LSTM(8, 32, batch_first=True)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv1(x))
        x = self.pool(self.conv2(x))
        x = self.pool(self.conv3(x))
        seq = self.dense(x).view(-1, 8, 8)
        _, (h, _) = self.lstm(seq)
        return self.head(h[-1])


@register_model(
    paper="S-Net (seed 002)",
    family="CNN + LSTM hybrid",
    description="A three-layer CNN whose summary is read step by step by a small memory network (LSTM).",
    gradcam_layer="conv3",
    recipe="snet",
)
def snet(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> SNet:
    """S-Net; our reading of how the LSTM reads the 64-vector, see seed-models.md.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("snet")
    return SNet(in_channels, num_classes, image_size)
