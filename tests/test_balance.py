"""Class weights and the balanced sampler, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from core.data import class_weights, sample_weights, weighted_sampler
from core.errors import DataError


def test_class_weights_single_label():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert w.dtype == torch.float32 and w.shape == (2,)
    assert torch.allclose(w, torch.tensor([0.5, 1.5]))  # 1/3 and 1, over their mean 2/3
    w = class_weights(torch.tensor([0] * 6 + [1] * 3 + [2]), 3)
    assert torch.allclose(w, torch.tensor([1 / 3, 2 / 3, 2.0]))  # 1/6, 1/3, 1 over mean 1/2
    assert torch.allclose(w.mean(), torch.tensor(1.0))
    assert torch.allclose(class_weights(torch.tensor([2, 0, 1]), 3), torch.ones(3))


def test_class_weights_absent_class_gets_zero():
    assert torch.allclose(class_weights(torch.tensor([0, 0, 1, 1]), 3), torch.tensor([1.0, 1.0, 0.0]))


def test_class_weights_multi_label_is_pos_weight():
    y = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.float32)
    # positives 3, 1, 0; negatives 1, 3, 4 -> 1/3, 3, and 1 for a label never seen positive
    assert torch.allclose(class_weights(y, 3), torch.tensor([1 / 3, 3.0, 1.0]))


def test_bad_labels_are_refused():
    with pytest.raises(DataError, match="outside 0..1"):
        class_weights(torch.tensor([0, 2]), 2)
    with pytest.raises(DataError, match="3 columns but there are 2 labels"):
        class_weights(torch.zeros(4, 3), 2)
    with pytest.raises(DataError, match="no training labels"):
        weighted_sampler(torch.zeros(0, dtype=torch.int64))


def test_sampler_draws_classes_about_uniformly():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    assert torch.allclose(sample_weights(labels)[[0, 900, 990]], torch.tensor([1 / 900, 1 / 90, 1 / 10], dtype=torch.float64))
    sampler = weighted_sampler(labels, num_samples=30_000, generator=torch.Generator().manual_seed(0))
    idx = torch.tensor(list(sampler))
    assert len(sampler) == 30_000 and idx.shape == (30_000,)
    freq = torch.bincount(labels[idx], minlength=3).double() / 30_000
    assert (freq - 1 / 3).abs().max() < 0.02  # base rates were 0.90 / 0.09 / 0.01
    again = list(weighted_sampler(labels, num_samples=30_000, generator=torch.Generator().manual_seed(0)))
    assert again == idx.tolist()
    assert len(weighted_sampler(labels)) == 1000


def test_sampler_multi_label_lifts_rare_labels():
    y = torch.zeros(1000, 2)
    y[:900, 0] = 1  # common finding
    y[900:950, 1] = 1  # rare finding; the last 50 have none
    idx = torch.tensor(list(weighted_sampler(y, num_samples=9000, generator=torch.Generator().manual_seed(1))))
    drawn = y[idx]
    assert abs(drawn[:, 1].mean().item() - 1 / 3) < 0.03
    assert abs((drawn.sum(dim=1) == 0).double().mean().item() - 1 / 3) < 0.03
