"""Loss functions: cross-entropy, BCE-with-logits and the margin loss of seed 003."""

from __future__ import annotations

import torch
from torch import nn


class MarginLoss(nn.Module):
    """The margin loss of QuadSNet (seed 003) on softmax class scores ``v``.

    ``L = sum_k w_k * (T_k * max(0, m_plus - v_k)^2 + lam * (1 - T_k) * max(0, v_k - m_minus)^2)``,
    averaged over the batch. ``T`` is the one-hot (or multi-hot) target and ``w`` optional
    per-class weights for imbalance (each class's term is weighted by its own weight).
    """

    def __init__(self, m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5,
                 weight: torch.Tensor | None = None, multi_label: bool = False):
        super().__init__()
        self.m_plus, self.m_minus, self.lam, self.multi_label = m_plus, m_minus, lam, multi_label
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits (B, K); target int (B,) or 0/1 (B, K). Returns: scalar loss."""
        logits = logits.float()
        if self.multi_label:
            v, t = torch.sigmoid(logits), target.float()
        else:
            v = torch.softmax(logits, dim=1)
            t = torch.nn.functional.one_hot(target.long(), logits.shape[1]).float()
        present = t * torch.clamp(self.m_plus - v, min=0) ** 2
        absent = self.lam * (1 - t) * torch.clamp(v - self.m_minus, min=0) ** 2
        per_class = present + absent
        if self.weight is not None:
            per_class = per_class * self.weight.to(per_class.device)
        return per_class.sum(dim=1).mean()


def build_loss(name: str, task: str, class_weights: torch.Tensor | None = None,
               label_smoothing: float = 0.0) -> nn.Module:
    """Make the loss for a task.

    Args:
        name: ``auto`` (cross-entropy, or BCE-with-logits for multi-label), ``ce``, ``bce``, ``margin``.
        task: ``binary``, ``multi-class``, ``multi-label`` or ``ordinal``.
        class_weights: optional (K,) weights (for BCE: positive weights per label).
        label_smoothing: for cross-entropy; for BCE targets are pulled toward 0.5 by it.

    Returns:
        A module mapping (logits, targets) to a scalar.
    """
    multi_label = task == "multi-label"
    if name == "auto":
        name = "bce" if multi_label else "ce"
    if name == "margin":
        return MarginLoss(weight=class_weights, multi_label=multi_label)
    if name == "bce" or multi_label:
        if not multi_label:
            raise ValueError("BCE-with-logits is for multi-label tasks; use cross-entropy for single-label ones.")
        return _SmoothedBCE(pos_weight=class_weights, smoothing=label_smoothing)
    return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)


class _SmoothedBCE(nn.Module):
    def __init__(self, pos_weight: torch.Tensor | None, smoothing: float):
        super().__init__()
        self.smoothing = smoothing
        self.loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        if self.smoothing:
            target = target * (1 - self.smoothing) + 0.5 * self.smoothing
        return self.loss(logits.float(), target)
