"""bench scale's images/s: one epoch's own seconds, not the running total of training time."""

from bench.scale import images_per_second


def test_images_per_second_uses_each_epochs_own_seconds_after_the_first():
    epochs = [{"epoch": 1, "epoch_seconds": 5.0, "train_seconds": 5.0},
              {"epoch": 2, "epoch_seconds": 2.0, "train_seconds": 7.0},
              {"epoch": 3, "epoch_seconds": 2.5, "train_seconds": 9.5},
              {"epoch": 4, "epoch_seconds": 2.0, "train_seconds": 11.5}]
    rate, timed = images_per_second(1000, epochs)
    assert timed == [2.0, 2.5, 2.0]
    assert rate == 500.0  # 1000 images / median 2.0 s (the running totals would give 1000 / 9.5)


def test_a_one_epoch_run_is_timed_on_its_only_epoch():
    assert images_per_second(300, [{"epoch_seconds": 3.0, "train_seconds": 3.0}]) == (100.0, [3.0])
