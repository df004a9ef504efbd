"""MedvLSTM (seed 000, Figure 6, Table 9): an LSTM reads the image row by row, a CNN reads the LSTM."""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import conv_bn_relu, conv_out, pool_out
from core.models.registry import no_pretrained_weights, register_model


class MedvLSTM(nn.Module):
    """BatchNorm -> 3-layer LSTM over image rows -> two conv groups -> 128 -> classes.

    Our reading (seed-models.md): the image is a sequence of H rows of W*C features; the
    LSTM's (B, H, 128) output is read as a one-channel image; conv groups are unpadded
    3x3, as in MedvCNN from the same paper.

    The 0.2 dropout between LSTM layers is an ``nn.Dropout`` between three one-layer
    LSTMs (the same computation as ``nn.LSTM(num_layers=3, dropout=0.2)``) so that
    Monte-Carlo dropout, which switches ``nn.Dropout`` layers on, reaches it.

    Args:
        in_channels: image channels.
        num_classes: output logits.
        image_size: input side length.
        hidden: LSTM hidden size.
        lstm_layers: number of stacked LSTM layers.
        dropout: dropout between LSTM layers.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        hidden: int = 128,
        lstm_layers: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm2d(in_channels)
        sizes = [image_size * in_channels] + [hidden] * lstm_layers
        self.lstms = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(lstm_layers))
        self.lstm_dropout = nn.Dropout(dropout)
        self.conv1 = conv_bn_relu(1, 16)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = conv_bn_relu(16, 64)
        self.pool2 = nn.MaxPool2d(2)
        rows = pool_out(conv_out(pool_out(conv_out(image_size, 3)), 3))
        cols = pool_out(conv_out(pool_out(conv_out(hidden, 3)), 3))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * rows * cols, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b, h, w * c)  # step t = image row t, all its pixels and channels
        for i, lstm in enumerate(self.lstms):
            if i > 0:
                seq = self.lstm_dropout(seq)
            seq, _ = lstm(seq)
        x = seq.unsqueeze(1)  # (B, 1, H, hidden): rows x hidden units, read as an image
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.classifier(x)


@register_model(
    paper="MedvLSTM (seed 000)",
    family="LSTM + CNN hybrid",
    description="Reads the image row by row with a memory network (LSTM), then a small CNN reads what it kept.",
    gradcam_layer="conv2",
    recipe="medvlstm",
)
def medvlstm(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> MedvLSTM:
    """MedvLSTM; our reading of the layer order and sizes, see seed-models.md.

    Grad-CAM hooks ``conv2``, the last convolution; its map is rows x LSTM units, so
    only its vertical axis lines up with the image.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: must be False.

    Returns:
        The network.
    """
    if pretrained:
        raise no_pretrained_weights("medvlstm")
    return MedvLSTM(in_channels, num_classes, image_size)
