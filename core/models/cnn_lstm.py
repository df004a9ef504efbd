"""The hybrid CNN-LSTM of the blood-cell paper (seed 004, Table 2)."""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import conv_bn_relu
from core.models.registry import no_pretrained_weights, register_model


class CNNLSTM(nn.Module):
    """Conv stem -> 49 tokens of 64 features -> Table 2 (Conv1d x2, LSTM 100, LSTM 50) -> classes.

    Our reading (seed-models.md): the stem is Conv 3x3 32 (padded) BN ReLU, MaxPool 2,
    Conv 3x3 64 (padded) BN ReLU, adaptive average pool to 7x7, giving Table 2's input of
    49 steps x 64 features at every image size. Table 2 shows no activation after its
    Conv1d layers, so there is none. The dropout rate is not given; 0.5.

    Args:
        in_channels: image channels.
        num_classes: output logits.
        image_size: input side length (the adaptive pool makes the rest size-independent).
        dropout: rate of the two dropout layers.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, 32, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = conv_bn_relu(32, 64, padding=1)
        self.tokens = nn.AdaptiveAvgPool2d(7)
        self.sequence = nn.Sequential(  # 49 -> 47 -> 23 -> 21 -> 10 steps
            nn.Conv1d(64, 64, 3),
            nn.BatchNorm1d(64),
            nn.MaxPool1d(2),
            nn.Conv1d(64, 128, 3),
            nn.BatchNorm1d(128),
            nn.MaxPool1d(2),
        )
        self.lstm1 = nn.LSTM(128, 100, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.lstm2 = nn.LSTM(100, 50, batch_first=True)
        self.drop2 = nn.Dropout(dropout)
        self.head = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens(self.conv2(self.pool(self.conv1(x))))  # (B, 64, 7, 7)
        x = self.sequence(x.flatten(2))  # (B, 128, 10): channels are features, positions are steps
        seq, _ = self.lstm1(x.transpose(1, 2))
        _, (h, _) = self.lstm2(self.drop1(seq))
        return self.head(self.drop2(h[-1]))


@register_model(
    paper="Hybrid CNN-LSTM (seed 004)",
    family="CNN + Conv1D + LSTM",
    description="A CNN turns the image into a sequence of patches that a memory network (LSTM) reads in order.",
    gradcam_layer="conv2",
    recipe="cnn_lstm",
)
def cnn_lstm(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> CNNLSTM:
    """The blood-cell paper's CNN-LSTM; our reading of the stem, see seed-models.md.

    Grad-CAM hooks ``conv2``, the last 2-D convolution.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("cnn_lstm")
    return CNNLSTM(in_channels, num_classes, image_size)
