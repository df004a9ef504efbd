"""Fabricate small trained runs quickly, for the explain, export and predict tests.

The synthetic task: 28 px grayscale noise, and class "present" has a bright square at a
random place. A few dozen optimiser steps are enough for a small CNN to learn it, so a test
gets a real trained run (checkpoint, eval.json, dataset folder) in a couple of seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CLASS_NAMES = ("absent", "present")
SQUARE = 7


def square_images(n: int, size: int = 28, seed: int = 0, square: int = SQUARE):
    """Noise images, half of them with a bright square.

    Returns:
        ``(images uint8 (n, 1, size, size), labels int64 (n,), boxes int (n, 4) as
        (top, left, bottom, right), all -1 for images without a square)``.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 110, size=(n, 1, size, size)).astype(np.uint8)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    boxes = -np.ones((n, 4), dtype=np.int64)
    for i in np.flatnonzero(labels == 1):
        top, left = rng.integers(0, size - square + 1, size=2)
        images[i, 0, top:top + square, left:left + square] = rng.integers(200, 256, size=(square, square))
        boxes[i] = (top, left, top + square, left + square)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), boxes


def normalise(images_u8: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    return (images_u8.float() / 255.0 - mean) / std


def train(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, steps: int = 60, lr: float = 3e-3,
          batch: int = 32, seed: int = 0) -> nn.Module:
    """A few Adam steps of cross-entropy; returns the model in eval mode."""
    torch.manual_seed(seed)
    x = normalise(images_u8)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class TinyCNN(nn.Module):
    """Three convolutions, global average pooling, a linear layer: Grad-CAM friendly."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def square_trainer(cfg):
    """A :class:`core.train.trainer.Trainer` of a tiny CNN on 64 training and 32 validation
    images of the square task (binary), on the CPU, its weights seeded with 0."""
    from core.train.trainer import Trainer, make_batches

    images, labels, _ = square_images(96, seed=1)
    train = make_batches(images[:64], labels[:64], (0.5,), (0.5,))
    val = make_batches(images[64:], labels[64:], (0.5,), (0.5,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    return Trainer(model, cfg, "binary", torch.device("cpu"), train, val)


def write_dataset_folder(root: Path, n_per_split: dict[str, int] | None = None, seed: int = 0) -> Path:
    """train/val/test folders of PNGs with one sub-folder per class; returns the folder."""
    n_per_split = n_per_split or {"train": 64, "val": 16, "test": 24}
    for k, (split, n) in enumerate(n_per_split.items()):
        images, labels, _ = square_images(n, seed=seed + 10 * k)
        for i, (img, y) in enumerate(zip(images, labels)):
            folder = root / split / CLASS_NAMES[int(y)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(folder / f"{split}_{i:03d}.png")
    return root


def make_run(runs_root: Path, model_name: str = "medvcnn", dataset: str | None = None, steps: int = 40,
             seed: int = 0, split_seed: int | None = None):
    """A completed run of a registered model trained on the square task.

    Args:
        runs_root: the runs directory.
        model_name: a name from ``core.models.list_models()`` (1-channel, 28 px).
        dataset: what params.json says the dataset is (a folder from
            :func:`write_dataset_folder`, so export can check on its test images);
            None records a dataset name that cannot be loaded.
        steps: optimiser steps.
        seed: data and weight seed.
        split_seed: recorded as the config's split seed (None: the seed draws the split).

    Returns:
        The :class:`core.runs.Run`.
    """
    from core.evaluate import evaluate_predictions
    from core.models import create_model, model_info
    from core.runs import RunStore

    torch.manual_seed(seed)
    model = create_model(model_name, 1, 2, 28)
    images, labels, _ = square_images(256, seed=seed)
    train(model, images, labels, steps=steps, seed=seed)
    config = {"dataset": dataset or "synthetic-squares", "model": model_name, "image_size": 28, "recipe": "default",
              "epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 3e-3, "schedule": "none", "seed": seed,
              "augment": "none", "tta": False, "device": "cpu", "pretrained": False, "split_seed": split_seed}
    store = RunStore(runs_root)
    run = store.create_run({"dataset": config["dataset"], "model": model_name, "image_size": 28,
                            "recipe": "default", "seed": seed, "config": config})
    evals = {}
    with torch.no_grad():
        for split, split_seed in (("val", seed + 101), ("test", seed + 202)):
            x, y, _ = square_images(96, seed=split_seed)
            probs = torch.softmax(model(normalise(x)), dim=1).numpy()
            evals[split] = evaluate_predictions(probs, y.numpy(), "binary", list(CLASS_NAMES))
    run.save_checkpoint("best", {
        "format": "studio-checkpoint-v1", "model_name": model_name,
        "model_args": {"in_channels": 1, "num_classes": 2, "image_size": 28},
        "state_dict": model.state_dict(), "class_names": list(CLASS_NAMES), "task": "binary",
        "mean": [0.5], "std": [0.5], "config": config, "temperature": 1.25,
    })
    run.write_eval(evals)
    info = model_info(model_name, 1, 2, 28)
    store.update_meta(run.id, status="completed", epochs_done=1, best_epoch=1, train_seconds=1.0,
                      params_count=info.params, task="binary", class_names=list(CLASS_NAMES),
                      test_acc=evals["test"]["acc"], test_auc=evals["test"]["auc"])
    return run


def write_square_npz(path: Path, sizes, seed: int = 0) -> Path:
    """``breastmnist.npz``-shaped arrays of the square task (grayscale 28 px, labels (n, 1)),
    for the tests that train through MedMNIST's reader (``sizes``: train, val, test counts)."""
    arrays = {}
    for k, (split, n) in enumerate(zip(("train", "val", "test"), sizes)):
        x, y, _ = square_images(n, seed=seed + k)
        arrays[f"{split}_images"] = x[:, 0].numpy()
        arrays[f"{split}_labels"] = y.numpy().reshape(-1, 1).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return path
