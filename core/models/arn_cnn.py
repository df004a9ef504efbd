"""ARN-CNN (seed 001, Figure 2): a CNN with attention modules and one residual block.

The paper's ablations (Table 6) are switches on :class:`ARNCNN` and are also registered
as ``arn_cnn_no_attention`` and ``arn_cnn_no_residual``.
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import conv_out, conv_relu, pool_out
from core.models.registry import no_pretrained_weights, register_model


class Attention(nn.Module):
    """A(c): the input times a per-pixel, per-channel gate from two 1x1 convolutions.

    Args:
        channels: c, the input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv2(self.relu(self.conv1(x))))


class ResidualBlock(nn.Module):
    """Conv3x3 same -> BN -> Conv3x3 same -> BN -> A, plus a 1x1 skip, then ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        attention: put A(out_channels) at the end of the main path.
        residual: add the 1x1-convolved input; off, the block is a plain two-conv stack.
    """

    def __init__(self, in_channels: int, out_channels: int, attention: bool = True, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.attention = Attention(out_channels) if attention else nn.Identity()
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if residual else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attention(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        if self.skip is not None:
            out = out + self.skip(x)
        return self.relu(out)


class ARNCNN(nn.Module):
    """ARN-CNN as in seed-models.md: stem, residual block, two convs, A(256) x4, 1x1 to 125, MLP.

    About 1.62 M parameters at 64 px, 1 channel, 6 classes; at 28 px the map before
    flatten is 1x1.

    Args:
        in_channels: image channels.
        num_classes: output logits.
        image_size: input side length.
        attention: keep the attention modules (False replaces each by identity).
        residual: keep the residual block's skip connection.
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, attention: bool = True, residual: bool = True
    ) -> None:
        super().__init__()
        self.attention = attention
        self.residual = residual

        def att(channels: int) -> nn.Module:
            return Attention(channels) if attention else nn.Identity()

        self.stem = nn.Sequential(conv_relu(in_channels, 32), nn.MaxPool2d(2), att(32), att(32))
        self.block = ResidualBlock(32, 64, attention=attention, residual=residual)
        self.pool1 = nn.MaxPool2d(2)
        self.conv1 = conv_relu(64, 64)
        self.att1 = att(64)
        self.conv2 = conv_relu(64, 256)
        self.pool2 = nn.MaxPool2d(2)
        self.att2 = nn.Sequential(*(att(256) for _ in range(4)))
        self.reduce = conv_relu(256, 125, kernel=1)
        # stem conv (valid) + pool, block (same) + pool, two valid convs, pool
        side = pool_out(conv_out(conv_out(pool_out(pool_out(conv_out(image_size, 3))), 3), 3))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(125 * side * side, 256),
            nn.GELU(),
            nn.Dropout(0.45),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.block(self.stem(x)))
        x = self.pool2(self.conv2(self.att1(self.conv1(x))))
        x = self.reduce(self.att2(x))
        return self.classifier(x)


_ARN = dict(paper="ARN-CNN (seed 001)", family="attention + residual CNN", gradcam_layer="conv2", recipe="arn_cnn")


@register_model(
    description="A CNN that learns where to look (attention) and uses a shortcut connection (residual).",
    **_ARN,
)
def arn_cnn(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> ARNCNN:
    """ARN-CNN with attention and the residual connection.

    Grad-CAM hooks ``conv2`` (3x3, 64->256), the last map before the final pool: twice
    the resolution of the 1x1 ``reduce`` layer's map, which is 1x1 at 28 px.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("arn_cnn")
    return ARNCNN(in_channels, num_classes, image_size)


@register_model(description="ARN-CNN with its attention modules removed (the paper's ablation).", **_ARN)
def arn_cnn_no_attention(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> ARNCNN:
    """ARN-CNN ablation: every attention module replaced by identity.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("arn_cnn_no_attention")
    return ARNCNN(in_channels, num_classes, image_size, attention=False)


@register_model(description="ARN-CNN without its shortcut (residual) connection (the paper's ablation).", **_ARN)
def arn_cnn_no_residual(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> ARNCNN:
    """ARN-CNN ablation: the residual block without its 1x1 skip connection.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("arn_cnn_no_residual")
    return ARNCNN(in_channels, num_classes, image_size, residual=False)
