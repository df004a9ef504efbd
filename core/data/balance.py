"""Counter class imbalance: loss weights, or a sampler that draws classes evenly."""

from __future__ import annotations

import torch
from torch.utils.data import WeightedRandomSampler

from core.errors import DataError


def _is_multilabel(labels: torch.Tensor) -> bool:
    return labels.ndim == 2 and torch.is_floating_point(labels)


def _class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if labels.ndim != 1 or torch.is_floating_point(labels):
        raise DataError(f"labels must be class indices (N,) or 0/1 multi-label floats (N, K), got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"labels run from {int(labels.min())} to {int(labels.max())}, outside 0..{num_classes - 1}; check the number of classes")
    return torch.bincount(labels.long(), minlength=num_classes)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Loss weights that make every class count equally.

    Single-label: weight ``1 / count`` per class, scaled so the classes present average 1
    (for ``CrossEntropyLoss(weight=...)``); a class with no samples gets 0. Multi-label
    (float (N, K) 0/1 labels): ``negatives / positives`` per label, for
    ``BCEWithLogitsLoss(pos_weight=...)``; a label with no positives gets 1.

    Args:
        labels: int (N,) class indices, or float (N, K) 0/1 labels.
        num_classes: K.

    Returns:
        float32 (K,) weights.
    """
    if _is_multilabel(labels):
        if labels.shape[1] != num_classes:
            raise DataError(f"labels have {labels.shape[1]} columns but there are {num_classes} labels; check the number of classes")
        pos = labels.sum(dim=0).double()
        neg = labels.shape[0] - pos
        return torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos)).float()
    counts = _class_counts(labels, num_classes).double()
    present = counts > 0
    if not present.any():
        return torch.zeros(num_classes, dtype=torch.float32)
    inverse = torch.where(present, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (inverse / inverse[present].mean()).float()


def sample_weights(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Per-sample drawing weights under which every class is drawn about equally often.

    Single-label: ``1 / count`` of the sample's class. Multi-label: the largest
    ``1 / positives`` over the sample's positive labels, and samples with no positive label
    form one more group ("no finding") weighted ``1 / its size``.

    Returns:
        float64 (N,) weights.
    """
    if _is_multilabel(labels):
        pos = labels.sum(dim=0).double()
        per_label = torch.where(pos > 0, 1.0 / pos.clamp(min=1), torch.zeros_like(pos))
        weights = (labels.double() * per_label).amax(dim=1)
        none = labels.sum(dim=1) == 0
        if none.any():
            weights[none] = 1.0 / int(none.sum())
        return weights
    k = num_classes if num_classes is not None else (int(labels.max()) + 1 if labels.numel() else 0)
    counts = _class_counts(labels, k).double()
    return 1.0 / counts[labels.long()]


def weighted_sampler(
    labels: torch.Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> WeightedRandomSampler:
    """A sampler that draws indices (with replacement) so classes come up about uniformly.

    Args:
        labels: int (N,) class indices, or float (N, K) 0/1 labels.
        num_samples: indices per epoch; defaults to N.
        generator: for a reproducible order.

    Returns:
        A ``torch.utils.data.WeightedRandomSampler``; iterate it for indices.
    """
    if labels.shape[0] == 0:
        raise DataError("there are no training labels to balance; add images to the train split")
    weights = sample_weights(labels)
    return WeightedRandomSampler(weights, num_samples or labels.shape[0], replacement=True, generator=generator)
