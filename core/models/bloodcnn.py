"""The baseline CNN of the blood-cell paper (seed 004, Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import conv_out, conv_relu, pool_out
from core.models.registry import no_pretrained_weights, register_model


class BloodCNN(nn.Module):
    """Conv 32 -> pool -> dropout -> Conv 64 -> pool -> dropout -> 64 -> dropout -> classes.

    Convolutions are unpadded 3x3 with ReLU, as Table 1's shapes show (64 -> 62 px).

    Args:
        in_channels: image channels.
        num_classes: output logits.
        image_size: input side length.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.conv1 = conv_relu(in_channels, 32)
        self.pool1 = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(0.25)
        self.conv2 = conv_relu(32, 64)
        self.pool2 = nn.MaxPool2d(2)
        self.drop2 = nn.Dropout(0.25)
        side = pool_out(conv_out(pool_out(conv_out(image_size, 3)), 3))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 64),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.pool1(self.conv1(x)))
        x = self.drop2(self.pool2(self.conv2(x)))
        return self.classifier(x)


@register_model(
    paper="Baseline CNN (seed 004)",
    family="plain CNN",
    description="A very small two-layer convolutional network, the blood-cell paper's simple baseline.",
    gradcam_layer="conv2",
    recipe="bloodcnn",
)
def bloodcnn(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BloodCNN:
    """The blood-cell paper's baseline CNN, exactly as Table 1.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("bloodcnn")
    return BloodCNN(in_channels, num_classes, image_size)
