"""The check that images have no up or down (core.data.turn_check), and what the default recipe
does with its answer: train on every turn and mirror image (``turns``) or keep ``flipshift``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.data.mirror_check import check_mirroring, draw_sample
from core.data.turn_check import MAX_TELL, check_turns, turned
from test_mirror_check import _stripes, _train, _write_folder


def _cells(per_class: int, upright: bool, seed: int = 0, size: int = 28):
    """Blobs anywhere in the image, the class is their size (a turn keeps it). upright: the
    image darkens from top to bottom, as an ultrasound does, so a turned image looks wrong."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images, labels = [], []
    for k in (0, 1):
        for _ in range(per_class):
            cx, cy = rng.uniform(6, size - 6, 2)
            radius = 2.5 if k == 0 else 5.0
            blob = 110 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2))
            light = 90 * (1 - yy / size) if upright else 45
            images.append(np.clip(40 + light + blob + rng.normal(0, 20, (size, size)), 0, 255))
            labels.append(k)
    return torch.as_tensor(np.stack(images)[:, None].astype(np.uint8)), np.array(labels)


def test_the_six_turns_are_the_square_symmetries_a_left_right_flip_does_not_give():
    x = np.arange(3 * 3, dtype=np.float32).reshape(1, 3, 3)
    outs = [turned(x, np.array([k]))[0] for k in range(6)]
    images = {x[0].tobytes(), x[0, :, ::-1].copy().tobytes()} | {o.tobytes() for o in outs}
    assert len(images) == 8  # with the image and its mirror: all eight symmetries of a square, once each
    assert np.array_equal(outs[0], x[0, ::-1]) and np.array_equal(outs[1], np.rot90(x[0]))


def test_images_with_no_up_or_down_may_be_turned():
    check = check_turns(*_cells(80, upright=False))
    assert check.allows_turns is True and check.images == 160
    assert 0.3 < check.tell < MAX_TELL and check.acc_plain > 0.8
    assert abs(check.acc_plain - check.acc_turned) < 0.1
    assert check.summary().startswith("the images look the same turned: a simple classifier told turned images "
                                      f"from upright ones {check.tell:.0%} of the time")


def test_images_with_an_up_are_not_turned_though_a_turn_keeps_the_class():
    check = check_turns(*_cells(80, upright=True))
    assert check.allows_turns is False and check.tell >= MAX_TELL
    assert check.summary().startswith("the images have an up and a down")


def test_slants_a_turn_changes_are_not_turned():
    # Stripes at 0/45/90/135 degrees: a quarter turn swaps 0 and 90, 45 and 135, yet the set of
    # images looks the same turned, so only the class question catches it.
    images, labels = _stripes([0, 45, 90, 135], per_class=60)
    check = check_turns(images, labels)
    assert check.allows_turns is False and check.tell < MAX_TELL
    assert check.acc_plain - check.acc_turned > 0.2
    assert check.summary().startswith("a turn changes what they show")
    assert check.to_dict()["allows_turns"] is False and check.to_dict()["images"] == 240


def test_what_it_does_not_check():
    multi = check_turns(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), np.zeros((10, 3)))
    assert multi.allows_turns is False and multi.summary() == "turns not used: multi-label data"
    wide = check_turns(torch.zeros(10, 1, 28, 40, dtype=torch.uint8), np.array([0, 1] * 5))
    assert wide.allows_turns is False and wide.summary() == "turns not used: the images are not square"
    assert wide.to_dict()["tell"] is None


@pytest.mark.parametrize("change, asked", [({}, True), ({"turn_check": False}, False), ({"augment": "light"}, False),
                                           ({"mirror": False}, False)])
def test_only_flipshift_with_the_check_asked_and_mirroring_allowed_becomes_turns(change, asked):
    from core.train import make_config
    from core.train.run import _turns

    images, labels = _cells(40, upright=False)
    data = dataclasses.make_dataclass("D", ["images", "labels"])({"train": images}, {"train": labels})
    cfg = dataclasses.replace(make_config("x", "medvcnn", "default"), **change)
    out, check = _turns(cfg, data, lambda: draw_sample(images, labels, seed=cfg.seed))
    assert (check is not None) is asked
    assert out.augment == ("turns" if asked else cfg.augment)
    assert dataclasses.replace(out, augment=cfg.augment) == cfg  # nothing else changes


def test_both_checks_give_the_same_answer_from_a_sample_drawn_once():
    images, labels = _cells(40, upright=False)
    sample = draw_sample(images, labels, seed=3)
    assert sample.x.shape == (80, 32, 32) and sample.skipped == ""
    assert check_turns(images, labels, seed=3, sample=sample) == check_turns(images, labels, seed=3)
    assert check_mirroring(images, labels, seed=3, sample=sample) == check_mirroring(images, labels, seed=3)
    assert check_turns(images, labels, seed=3, sample=sample) == check_turns(images, labels, seed=3, sample=sample)
    assert draw_sample(images, np.zeros((80, 3)), seed=3).skipped == "multi-label data"


def test_a_default_run_on_images_with_no_up_trains_on_turns(tmp_path, monkeypatch):
    import core.data.mirror_check as mirror_check

    draws = []
    real_draw = mirror_check.draw_sample
    monkeypatch.setattr(mirror_check, "draw_sample", lambda *a, **k: draws.append(1) or real_draw(*a, **k))
    images, labels = _cells(36, upright=False)
    folder = _write_folder(tmp_path / "cells", images, labels, ["small", "large"])
    run = _train(folder, tmp_path / "runs")
    assert len(draws) == 1, "the mirror and turn checks share one sample of the training images"
    assert run.meta()["mirror_check"]["images"] == 48
    meta = run.meta()
    assert meta["turn_check"]["allows_turns"] is True and meta["turn_check"]["images"] == 48
    assert meta["turn_check"]["summary"].startswith("the images look the same turned")
    assert run.params()["config"]["augment"] == "flipshift"  # what was asked ...
    assert run.load_checkpoint("best")["config"]["augment"] == "turns"  # ... and what was used
