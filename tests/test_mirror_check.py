"""The check that a mirror image keeps its class (core.data.mirror_check), and what a run does
with its answer: no flips, no test-time flips, and the reason where the person sees it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.data.mirror_check import check_mirroring


def _stripes(angles_deg, per_class: int, seed: int = 0, size: int = 28):
    """uint8 (N, 1, H, W) noisy stripes, class k slanted at angles_deg[k]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images, labels = [], []
    for k, deg in enumerate(angles_deg):
        for _ in range(per_class):
            a = math.radians(deg) + rng.normal(0, 0.05)
            wave = np.sin(rng.uniform(0.35, 0.6) * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 2 * math.pi))
            images.append(np.clip(128 + 50 * wave + rng.normal(0, 45, (size, size)), 0, 255))
            labels.append(k)
    return torch.as_tensor(np.stack(images)[:, None].astype(np.uint8)), np.array(labels)


def _blobs(per_class: int, side_is_class: bool, seed: int = 0, size: int = 28):
    """A bright blob in noise. side_is_class: class 0 on the left, 1 on the right. Otherwise
    every blob is on the left and the class is its size (the image is lopsided, the class is not)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images, labels = [], []
    for k in (0, 1):
        for _ in range(per_class):
            cx = (7 if k == 0 else 20) if side_is_class else 7
            radius = 4.0 if side_is_class else (3.0 if k == 0 else 5.5)
            cx, cy = cx + rng.normal(0, 1.5), 14 + rng.normal(0, 3)
            blob = 120 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2))
            images.append(np.clip(60 + blob + rng.normal(0, 25, (size, size)), 0, 255))
            labels.append(k)
    return torch.as_tensor(np.stack(images)[:, None].astype(np.uint8)), np.array(labels)


def test_slants_that_mirror_into_each_other_are_caught():
    images, labels = _stripes([0, 36, 72, 108, 144], per_class=60)  # 36 <-> 144, 72 <-> 108
    check = check_mirroring(images, labels)
    assert check.changes_class is True and check.images == 300
    assert check.acc_plain - check.acc_mirrored > 0.15
    assert f"scored {check.acc_mirrored:.2f} instead of {check.acc_plain:.2f} on 300 training images" in check.summary()


def test_slants_a_mirror_keeps_are_left_alone():
    images, labels = _stripes([0, 90], per_class=60)  # horizontal and vertical stay what they are
    check = check_mirroring(images, labels)
    assert check.changes_class is False and check.acc_plain > 0.9
    assert abs(check.acc_plain - check.acc_mirrored) < 0.05


def test_a_class_told_by_its_side_is_caught_and_a_lopsided_image_is_not():
    side = check_mirroring(*_blobs(60, side_is_class=True))
    assert side.changes_class is True and side.acc_plain > 0.9 and side.acc_mirrored < 0.7
    lopsided = check_mirroring(*_blobs(60, side_is_class=False))
    assert lopsided.changes_class is False and lopsided.acc_plain > 0.8


def test_what_it_does_not_check():
    multi = check_mirroring(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), np.zeros((10, 3)))
    assert multi.changes_class is False and multi.summary() == "not checked: multi-label data"
    few = check_mirroring(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), np.array([0, 0, 1, 1]))
    assert few.changes_class is False and "fewer than 3 training images in a class" in few.summary()
    assert few.to_dict()["acc_plain"] is None


def test_the_sample_is_capped_stratified_and_repeats_with_its_seed():
    images, labels = _stripes([0, 36, 144], per_class=100)
    first = check_mirroring(images, labels, seed=3, max_images=150)
    assert first.images == 150
    assert first == check_mirroring(images, labels, seed=3, max_images=150)


def _write_folder(root, images, labels, names):
    from PIL import Image

    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    for n, i in enumerate(order):
        split = "train" if n % 6 < 4 else ("val" if n % 6 == 4 else "test")
        folder = root / split / names[int(labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i, 0].numpy()).save(folder / f"{i:04d}.png")
    return root


def _train(folder, root):
    from core.runs import RunStore
    from core.runs.worker import train_in_this_process as run_training
    from core.train import build_params, make_config

    store = RunStore(root)
    cfg = make_config(str(folder), "medvcnn", "default", image_size=28, epochs=1, device="cpu")
    assert cfg.augment == "flipshift" and cfg.tta and cfg.mirror_check
    run = store.create_run(build_params(cfg), name=folder.name)
    assert run_training(run, store) == 0
    return run


def test_a_run_on_slants_trains_and_predicts_without_mirroring(tmp_path):
    from core.inference import load_run_model
    from core.train.evaluation import evaluate_run

    images, labels = _stripes([0, 36, 72, 108, 144], per_class=48)
    folder = _write_folder(tmp_path / "slants", images, labels, [f"slant_{k}" for k in range(5)])
    run = _train(folder, tmp_path / "runs")
    meta = run.meta()
    assert meta["mirror_check"]["changes_class"] is True and meta["mirror_check"]["images"] == 160
    assert meta["laterality"]["source"] == "images" and meta["laterality"]["side_matters"] is True
    ckpt = run.load_checkpoint("best")
    assert ckpt["config"]["mirror"] is False and ckpt["config"]["tta"] is False
    lm = load_run_model(run)
    assert lm.mirror is False
    assert lm.mirror_reason.startswith("a check on the training images found that a mirror image changes the class")
    assert meta["mirror_check"]["summary"] in lm.mirror_reason
    assert evaluate_run(run, tta=True, splits=("test",))["test"]["tta"] is False  # asked, refused


def test_a_run_on_data_a_mirror_keeps_still_mirrors(tmp_path):
    from core.train.evaluation import evaluate_run
    from helpers_runs import write_dataset_folder

    folder = write_dataset_folder(tmp_path / "squares", {"train": 48, "val": 16, "test": 16})
    run = _train(folder, tmp_path / "runs")
    meta = run.meta()
    assert meta["mirror_check"]["changes_class"] is False and meta["mirror_check"]["images"] == 48
    assert meta["laterality"]["side_matters"] is False
    assert run.load_checkpoint("best")["config"]["tta"] is True
    assert evaluate_run(run, tta=True, splits=("test",))["test"]["tta"] is True
