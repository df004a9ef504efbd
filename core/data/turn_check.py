"""Do these images have an up and a down? A quick check before training on turned copies.

Blood cells, tissue and other images seen from no particular side look as natural turned a
quarter or upside down as they do upright, and training on every turn and mirror image of
them (the ``turns`` augmentation) teaches a network more from the same images: bloodmnist
rose from 0.970 to 0.977 test ACC in 10 minutes (BENCHMARKS.md). A chest X-ray or an
ultrasound turned on its side is an image the model will never be shown, and a pattern told
apart by its slant changes class when turned. So the default recipe asks two questions of a
sample of the training images (never validation or test), with the same cheap features and
shrunk linear discriminant as :mod:`core.data.mirror_check`:

1. Can the classifier tell a turned image from an upright one? Half the images are shown as
   they are, half turned (each by one of the six turns and flips the ``turns`` augmentation
   adds to a left-right flip); the cross-validated accuracy of telling them apart is near 0.5
   for images with no up or down and near 1 for X-rays and ultrasound.
2. Does teaching the class with turned copies cost held-out accuracy (a paired comparison
   over the same images, as the mirror check does)? If so a turn changes the class.

Turns are used only when the answer to both is no.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.mirror_check import (MAX_IMAGES, CheckSample, clearly_worse, cross_validate_with_copies, draw_sample,
                                    orientation_features, paired_drop)

#: Telling turned images from upright ones at least this often means the images have an up.
#: Measured (BENCHMARKS.md): bloodmnist 0.70, a generated stripe set 0.49; breastmnist 1.00.
MAX_TELL = 0.85
_FOLDS = 3


@dataclass(frozen=True)
class TurnCheck:
    """What the check measured.

    Attributes:
        allows_turns: True when training may use every turn and mirror image.
        tell: cross-validated accuracy of telling a turned image from an upright one (0.5 is chance).
        acc_plain: held-out class accuracy of the classifier taught on the images as they are.
        acc_turned: the same, taught with turned copies added.
        images: how many training images were used.
        skipped: why the check was not made, else ``""`` (turns are then not used).
    """

    allows_turns: bool
    tell: float = math.nan
    acc_plain: float = math.nan
    acc_turned: float = math.nan
    images: int = 0
    skipped: str = ""

    def summary(self) -> str:
        """One sentence with the numbers, for meta.json and the page."""
        if self.skipped:
            return f"turns not used: {self.skipped}"
        if self.tell >= MAX_TELL:
            why = "the images have an up and a down"
        elif not self.allows_turns:
            why = "a turn changes what they show"
        else:
            why = "the images look the same turned"
        return (f"{why}: a simple classifier told turned images from upright ones {self.tell:.0%} of the time "
                f"(50 % is chance) and, taught with turned copies, scored {self.acc_turned:.2f} instead of "
                f"{self.acc_plain:.2f} on {self.images} training images")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for meta.json."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 4)

        return {"allows_turns": self.allows_turns, "tell": num(self.tell), "acc_plain": num(self.acc_plain),
                "acc_turned": num(self.acc_turned), "images": self.images, "skipped": self.skipped,
                "summary": self.summary()}


def turned(x: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Each square image ``x[i]`` (n, H, W) under one of the six turns and flips that a left-right
    flip does not give: ``which[i]`` in 0-5 = up-down flip, a quarter turn either way, a half
    turn, and the two diagonal flips."""
    out = np.empty_like(x)
    ops = (lambda a: a[:, ::-1, :], lambda a: np.rot90(a, 1, axes=(1, 2)), lambda a: np.rot90(a, 3, axes=(1, 2)),
           lambda a: a[:, ::-1, ::-1], lambda a: a.transpose(0, 2, 1), lambda a: a[:, ::-1, ::-1].transpose(0, 2, 1))
    for k, op in enumerate(ops):
        idx = np.flatnonzero(which == k)
        if len(idx):
            out[idx] = op(x[idx])
    return out


def check_turns(images: Any, labels: Any, seed: int = 0, max_images: int = MAX_IMAGES,
                sample: CheckSample | None = None) -> TurnCheck:
    """Whether these training images may be turned and flipped every way in training.

    Args:
        images, labels, seed, max_images: as :func:`core.data.mirror_check.draw_sample` takes them.
        sample: the sample already drawn from these images with this seed (the mirror check's);
            drawn here when None.

    Returns:
        A :class:`TurnCheck`; ``allows_turns`` is False whenever the check could not be made.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    shape = tuple(images.shape)
    if np.asarray(labels).ndim == 1 and (len(shape) != 4 or shape[2] != shape[3]):
        return TurnCheck(False, skipped="the images are not square")
    if sample is None:
        sample = draw_sample(images, labels, seed, max_images)
    if sample.skipped:
        return TurnCheck(False, skipped=sample.skipped)
    rng = sample.rng()
    x, y, plain = sample.x, sample.y, sample.plain
    copies = orientation_features(turned(x, rng.integers(0, 6, size=len(x))))
    # 1. Upright or not: each image shown once, as it is or turned, never both.
    shown_turned = rng.permutation(len(x)) < len(x) // 2
    tell_x = np.where(shown_turned[:, None], copies, plain)
    folds = StratifiedKFold(n_splits=_FOLDS, shuffle=True, random_state=int(rng.integers(2**31)))
    tell = float(cross_val_score(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), tell_x,
                                 shown_turned.astype(int), cv=folds).mean())
    # 2. Does a turn keep the class?
    right_plain, right_turned = cross_validate_with_copies(plain, copies, y, rng)
    keeps_class = not clearly_worse(*paired_drop(right_plain, right_turned))
    return TurnCheck(bool(tell < MAX_TELL and keeps_class), tell, float(right_plain.mean()),
                     float(right_turned.mean()), int(len(y)))
