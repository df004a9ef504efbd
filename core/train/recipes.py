"""Training recipes: each seed paper's recipe as ``seed-models.md`` states it, the MedMNIST
benchmark's recipe, and a fast default that a person can trust on a CPU.

A recipe is a set of :class:`TrainConfig` values; :func:`make_config` applies one and then the
person's overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.train.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {}


def _add(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


# The fast default: a short one-cycle AdamW run with light, label-preserving augmentation.
# Picked on validation AUC of bloodmnist and breastmnist (see BENCHMARKS.md), never on test.
# Whole-pixel shifts replaced 10-degree rotations: at 28 px the bilinear resampling of a
# rotation blurs the image, while a shift of whole pixels is exact (figures in BENCHMARKS.md).
_add(Recipe(
    "default", "studio",
    "Fast and dependable on a CPU: AdamW with a one-cycle schedule, left-right flips and small shifts, "
    "label smoothing, an average of the recent weights, the epoch with the best validation AUC kept, "
    "test-time flips (no flips when a check on the training images finds that a mirror image changes "
    "the class; every turn as well when a check finds the images have no up or down).",
    dict(optimizer="adamw", lr=3e-3, weight_decay=5e-4, batch_size=0, epochs=30, schedule="onecycle",
         loss="auto", label_smoothing=0.05, augment="flipshift", monitor="val_auc", tta=True, ema=0.99,
         turn_check=True),
))
_add(Recipe(
    "medmnist", "MedMNIST v2 benchmark (Yang et al. 2023)",
    "The benchmark's recipe: Adam 0.001, batch 128, 100 epochs, decay at 50 % and 75 %, "
    "no augmentation, epoch picked by validation AUC.",
    dict(optimizer="adam", lr=1e-3, batch_size=128, epochs=100, schedule="multistep", milestones=(0.5, 0.75),
         gamma=0.1, loss="auto", augment="none", monitor="val_auc"),
))
_add(Recipe(
    "medvcnn", "MedvCNN paper",
    "Paper recipe: SGD lr 0.001 with momentum 0.9, batch 128, 50 epochs, cross-entropy.",
    dict(optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=128, epochs=50, schedule="none", loss="auto",
         augment="none", monitor="val_loss"),
))
_add(Recipe(
    "medvlstm", "MedvCNN paper (MedvLSTM)",
    "Paper recipe (shared with MedvCNN): SGD lr 0.001 with momentum 0.9, batch 128, 50 epochs.",
    dict(optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=128, epochs=50, schedule="none", loss="auto",
         augment="none", monitor="val_loss"),
))
_add(Recipe(
    "arn_cnn", "ARN-CNN paper",
    "Paper recipe: Adamax lr 0.001, batch 40, halve the rate when val loss stalls, early stopping "
    "after 3 epochs, small L1/L2 on dense layers, and 'dwell' (undo epochs that did not help).",
    dict(optimizer="adamax", lr=1e-3, batch_size=40, epochs=100, schedule="plateau", plateau_factor=0.5,
         plateau_patience=1, early_stopping=3, l1=1e-6, l2=1e-5, dwell=True, loss="auto",
         augment="none", monitor="val_loss"),
))
_add(Recipe(
    "snet", "S-Net paper",
    "Paper recipe: Adam, 30 epochs, L2 0.001, rotation/zoom/flip/shift/shear augmentation, "
    "the epoch with the lowest validation loss.",
    dict(optimizer="adam", lr=1e-3, batch_size=32, epochs=30, schedule="none", weight_decay=1e-3,
         loss="auto", augment="snet", monitor="val_loss"),
))
_add(Recipe(
    "quadsnet", "QuadSNet paper",
    "Paper recipe: Adam lr 0.0001, batch 32, margin loss with class weights for imbalance.",
    dict(optimizer="adam", lr=1e-4, batch_size=32, epochs=50, schedule="none", loss="margin",
         class_weights=True, augment="none", monitor="val_loss"),
))
_add(Recipe(
    "bloodcnn", "Blood-cell paper (baseline CNN)",
    "Our reading (the paper gives no recipe): Adam lr 0.001, batch 32, 30 epochs, cross-entropy.",
    dict(optimizer="adam", lr=1e-3, batch_size=32, epochs=30, schedule="none", loss="auto",
         augment="none", monitor="val_loss"),
))
_add(Recipe(
    "cnn_lstm", "Blood-cell paper (CNN-LSTM)",
    "Our reading (the paper gives no recipe): Adam lr 0.001, batch 32, 30 epochs, cross-entropy.",
    dict(optimizer="adam", lr=1e-3, batch_size=32, epochs=30, schedule="none", loss="auto",
         augment="none", monitor="val_loss"),
))


# What each recipe does, in words a clinician reads; the page shows the technical
# description (optimiser, schedule, ...) beside it in a help tooltip.
SUMMARIES: dict[str, str] = {
    "default": "Learns fast, sees slightly shifted and mirrored copies of the training images (unless mirroring "
               "would change what they show; turned copies too when the images have no up or down), checks itself on held-back images after every round and keeps its "
               "best version.",
    "medmnist": "The recipe the MedMNIST benchmark used: a long, steady training on the images as they are, "
                "keeping the version that did best on held-back images.",
    "medvcnn": "As the MedvCNN paper trained it: slow, steady learning for 50 rounds on the images as they are.",
    "medvlstm": "As the MedvCNN paper trained MedvLSTM: slow, steady learning for 50 rounds on the images as they "
                "are.",
    "arn_cnn": "As the ARN-CNN paper trained it: slows its learning when it stops improving, undoes rounds that did "
               "not help, and stops early when held-back images show no more progress.",
    "snet": "As the S-Net paper trained it: 30 rounds on turned, zoomed, mirrored and shifted copies of the images, "
            "keeping the version that erred least on held-back images.",
    "quadsnet": "As the QuadSNet paper trained it: careful small steps, with rare classes counted more so they are "
                "not ignored.",
    "bloodcnn": "A plain, steady training for 30 rounds (the blood-cell paper gives no recipe; this is our reading).",
    "cnn_lstm": "A plain, steady training for 30 rounds (the blood-cell paper gives no recipe; this is our reading).",
}


def recipe_summary(name: str) -> str:
    """What a recipe does in plain words (its technical description when it has none).

    Args:
        name: a recipe name (``paper`` is not resolved here; pass the model's recipe).

    Returns:
        One or two sentences for a person who does not train models.
    """
    return SUMMARIES.get(name) or get_recipe(name).description


def list_recipes() -> list[str]:
    """Names of all recipes."""
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """A recipe by name; ``paper`` is resolved by :func:`make_config` against the model."""
    if name not in RECIPES:
        raise ConfigError(f"recipe '{name}' is not known; choose one of: {', '.join(list_recipes() + ['paper'])}.")
    return RECIPES[name]


def paper_recipe_for(model: str) -> str | None:
    """The seed recipe of a model (``arn_cnn_no_attention`` -> ``arn_cnn``), or None."""
    for key in ("medvcnn", "medvlstm", "arn_cnn", "snet", "quadsnet", "bloodcnn", "cnn_lstm"):
        if model == key or model.startswith(key + "_"):
            return key
    return None


def make_config(dataset: str, model: str, recipe: str = "default", **overrides: Any) -> TrainConfig:
    """Settings for a run: the recipe's values, then the overrides that are not None.

    Args:
        dataset: a MedMNIST name or a path to an image folder or zip.
        model: a registered model name.
        recipe: a recipe name, or ``paper`` for the model's own paper recipe.
        overrides: any :class:`TrainConfig` field.

    Returns:
        The (not yet validated) settings.
    """
    if recipe == "paper":
        recipe = paper_recipe_for(model) or "default"
    values = dict(get_recipe(recipe).values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(dataset=dataset, model=model, recipe=recipe, **values)
