"""QuadSNet (seed 003, Figure 1): four parallel streams (conv 3x3, conv 5x5, separable 3x3 and 5x5)."""

from __future__ import annotations

import torch
from torch import nn

from core.models.registry import no_pretrained_weights, register_model


class SeparableConv2d(nn.Module):
    """Depthwise k x k convolution then pointwise 1x1 (Keras ``SeparableConv2D``, "same" padding).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: depthwise kernel side (odd).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def quad_block(in_channels: int, out_channels: int, kernel: int, separable: bool, pool: bool) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU -> MaxPool 2 (or nothing) -> Dropout 0.3.

    BatchNorm uses the paper's Keras momentum 0.99, which is 0.01 in PyTorch's convention,
    and epsilon 1e-4.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: 3 or 5; "same" padding so the four streams' maps keep one size.
        separable: depthwise-separable instead of ordinary convolution.
        pool: max-pool by 2.

    Returns:
        The block.
    """
    conv = (
        SeparableConv2d(in_channels, out_channels, kernel)
        if separable
        else nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    )
    return nn.Sequential(
        conv,
        nn.BatchNorm2d(out_channels, eps=1e-4, momentum=0.01),
        nn.ReLU(),
        nn.MaxPool2d(2) if pool else nn.Identity(),
        nn.Dropout(0.3),
    )


class QuadStreams(nn.Module):
    """The four streams side by side; the output is their maps concatenated on channels.

    Args:
        in_channels: image channels.
        widths: output channels of the four blocks of each stream.
        pools: for each block, whether it max-pools.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], pools: tuple[bool, ...]) -> None:
        super().__init__()

        def stream(kernel: int, separable: bool) -> nn.Sequential:
            ins = (in_channels, *widths[:-1])
            return nn.Sequential(
                *(quad_block(i, o, kernel, separable, p) for i, o, p in zip(ins, widths, pools, strict=True))
            )

        self.cs1 = stream(3, separable=False)
        self.cs2 = stream(5, separable=False)
        self.ss1 = stream(3, separable=True)
        self.ss2 = stream(5, separable=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cs1(x), self.cs2(x), self.ss1(x), self.ss2(x)], dim=1)


class QuadSNet(nn.Module):
    """Four streams -> concatenate -> global average pool -> Dropout 0.3 -> classes.

    Our reading of the widths: 32, 64, 128, 256 per block (``base_width`` doubling).
    A block max-pools only while its input is at least 16 px, so small inputs keep a
    usable map: at 28 px only the first block pools (28 -> 14); at 64 px the last does not
    (64 -> 32 -> 16 -> 8); at 128 and 224 px all four do.

    Args:
        in_channels: image channels.
        num_classes: output logits (the margin loss reads their softmax).
        image_size: input side length.
        base_width: channels of the first block; each later block doubles it.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, base_width: int = 32) -> None:
        super().__init__()
        widths = tuple(base_width * 2**i for i in range(4))
        pools, side = [], image_size
        for _ in widths:
            pools.append(side >= 16)
            side = side // 2 if side >= 16 else side
        self.features = QuadStreams(in_channels, widths, tuple(pools))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model(
    paper="QuadSNet (seed 003)",
    family="four-stream CNN (conv + separable)",
    description="Four small networks look at the image side by side with different filters, then pool what they found.",
    gradcam_layer="features",
    recipe="quadsnet",
)
def quadsnet(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> QuadSNet:
    """QuadSNet; our reading of the block widths and of the small-input pooling rule.

    Grad-CAM hooks ``features``, the four streams' concatenated maps.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("quadsnet")
    return QuadSNet(in_channels, num_classes, image_size)
