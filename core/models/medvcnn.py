"""MedvCNN (seed 000, section 5.1.2, Table 3): five conv groups and three dense layers."""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import conv_bn_relu, conv_out, pool_out
from core.models.registry import no_pretrained_weights, register_model


class MedvCNN(nn.Module):
    """Five Conv3x3-BN-ReLU groups (16, 16, pool, 64, 64, 64 padded, pool) and a 128-128 MLP.

    This is the MedMNIST getting-started network. The flatten size follows the input:
    64 * 4 * 4 = 1024 at 28 px, 64 * 13 * 13 at 64 px.

    Args:
        in_channels: image channels.
        num_classes: output logits.
        image_size: input side length.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, 16)
        self.conv2 = conv_bn_relu(16, 16)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv3 = conv_bn_relu(16, 64)
        self.conv4 = conv_bn_relu(64, 64)
        self.conv5 = conv_bn_relu(64, 64, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2)
        side = pool_out(conv_out(conv_out(pool_out(conv_out(conv_out(image_size, 3), 3)), 3), 3))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv2(self.conv1(x)))
        x = self.pool2(self.conv5(self.conv4(self.conv3(x))))
        return self.classifier(x)


@register_model(
    paper="MedvCNN (seed 000)",
    family="plain CNN",
    description="A small five-layer convolutional network built for MedMNIST images.",
    gradcam_layer="conv5",
    recipe="medvcnn",
)
def medvcnn(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> MedvCNN:
    """MedvCNN as seed-models.md specifies it (no pretrained weights exist).

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("medvcnn")
    return MedvCNN(in_channels, num_classes, image_size)
