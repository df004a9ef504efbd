"""Mixup: the blend and the loss follow the formula, the draw is seeded by (seed, step), the
setting is validated, and training with it is deterministic and differs from training without."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import ConfigError
from core.train.config import TrainConfig, validate
from core.train.mixup import mix_batch, mixed_loss, mixup_weight
from tests.helpers_runs import square_trainer


def test_weight_is_seeded_by_seed_and_step_and_folded_to_the_upper_half():
    draws = [mixup_weight(0.2, seed=3, step=s) for s in range(200)]
    assert draws == [mixup_weight(0.2, seed=3, step=s) for s in range(200)]
    assert draws != [mixup_weight(0.2, seed=4, step=s) for s in range(200)]
    assert all(0.5 <= d <= 1.0 for d in draws)
    # Beta(0.2, 0.2) folded: most draws sit near 1 (a light blend), their mean well above 0.5.
    assert 0.8 < sum(draws) / len(draws) < 0.95


def test_blend_and_loss_follow_the_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(4 * 2, dtype=torch.float32).reshape(4, 1, 1, 2)
    mixed, pair = mix_batch(x, 0.75, g)
    assert sorted(pair.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, 0.75 * x + 0.25 * x[pair])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -0.5]])
    y = torch.tensor([0, 1, 1, 0])
    ce = nn.CrossEntropyLoss()
    expected = 0.75 * ce(logits, y) + 0.25 * ce(logits, y[pair])
    assert float(mixed_loss(ce, logits, y, pair, 0.75)) == pytest.approx(float(expected))


@pytest.mark.parametrize("bad", [-0.1, 4.5, float("nan")])
def test_out_of_range_alpha_is_refused(bad):
    with pytest.raises(ConfigError, match="mixup"):
        validate(TrainConfig(dataset="x", model="medvcnn", mixup=bad))


def _train(mixup: float) -> dict[str, torch.Tensor]:
    cfg = TrainConfig(dataset="x", model="m", epochs=2, batch_size=16, lr=1e-2, mixup=mixup, seed=5)
    trainer = square_trainer(cfg)
    trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_training_with_mixup_is_deterministic_and_not_a_no_op():
    a, b, plain = _train(0.4), _train(0.4), _train(0.0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], plain[k]) for k in a if a[k].is_floating_point())
