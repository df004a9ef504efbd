"""The Train page's step timing runs the real trainer (issue 14): no second training loop."""

from __future__ import annotations

import pytest

from core.train import step_timer
from core.train.trainer import Trainer


@pytest.fixture
def counted(monkeypatch):
    """Record the batch of every training step the timer takes, through Trainer itself."""
    seen: list[tuple[int, str, str]] = []
    real = Trainer.train_one_epoch

    def spy(self, epoch):
        seen.append((self.cfg.batch_size, type(self.loss_fn).__name__, self.optimizer.__class__.__name__))
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", spy)
    return seen


def test_two_probe_sizes_through_the_trainer(counted):
    fixed, per_image = step_timer.measure_train_step("medvcnn", 28, 1, 3, batch_size=4)
    assert fixed >= 0 and per_image > 0
    # a warm-up and a timed step at 2 images, then at 4; the run's own loss and optimiser
    assert counted == [(2, "CrossEntropyLoss", "AdamW")] * 2 + [(4, "CrossEntropyLoss", "AdamW")] * 2


def test_one_probe_when_the_batch_is_tiny(counted):
    fixed, per_image = step_timer.measure_train_step("medvcnn", 28, 1, 2, batch_size=2)
    assert fixed == 0.0 and per_image > 0
    assert [b for b, _, _ in counted] == [2, 2]


def test_multi_label_steps_use_the_multi_label_loss(counted):
    _, per_image = step_timer.measure_train_step("medvcnn", 28, 1, 4, batch_size=4, task="multi-label")
    assert per_image > 0
    assert {loss for _, loss, _ in counted} == {"_SmoothedBCE"}


def test_slow_large_images_skip_the_second_probe(counted, monkeypatch):
    monkeypatch.setattr(step_timer, "HEAVY_STEP_S", 0.0)  # every step counts as slow
    fixed, per_image = step_timer.measure_train_step("medvcnn", 128, 1, 2, batch_size=16)
    assert fixed == 0.0 and per_image > 0
    assert [b for b, _, _ in counted] == [2, 2]


def test_epoch_seconds_from_a_step_cost():
    # 546 images in batches of 128 is 5 steps, plus a validation pass over 78 images
    assert step_timer.epoch_seconds((0.1, 0.001), 128, 546, 78) == pytest.approx(5 * 0.228 + (0.1 + 0.078) / 3)
    assert step_timer.epoch_seconds((0.0, 0.01), 10, 25, 0) == pytest.approx(3 * 0.1)  # a last, short batch is a step
