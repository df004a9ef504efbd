"""Does a left-right mirror image keep its class? A quick check on the training images.

Class names catch ``kidney-left`` (:mod:`core.data.laterality`), but a dataset can depend on
sides without saying so: arrows, handwriting, a lesion that is always on one side, patterns
told apart by their slant (a stripe at 36 degrees mirrors to one at 144). Training on mirrored
copies of such images, with the label kept, teaches the model that the two classes are one.

The check asks a simple classifier the same question the augmentation raises. On a sample of
the training images (never validation or test), a linear discriminant (closed form, shrunk) on orientation
histograms and a coarse thumbnail is cross-validated twice: taught on the images as they are,
and taught on them plus their mirror images with the same labels. Both are scored on the same
held-out images as they are. When teaching with mirror images costs it clearly more accuracy
than chance allows (a paired comparison over the same images), mirroring changes the classes
and the run is trained and evaluated without it. Images whose classes do not depend on sides
(blood cells, most scans) lose nothing, or gain: the check leaves them alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: At most this many training images are looked at (stratified); a few seconds on a CPU.
MAX_IMAGES = 2000
#: Teaching with mirror images must cost at least this much held-out accuracy ...
MIN_DROP = 0.10
#: ... and this many standard errors of the paired difference, to count as a change of class.
MIN_Z = 3.0
_SIZE = 32  # images are brought to this size first
_BINS = 9  # orientation bins over 0-180 degrees
_FOLDS = 3


@dataclass(frozen=True)
class MirrorCheck:
    """What the check measured.

    Attributes:
        changes_class: True when mirror images should not be used (augmentation, tta).
        acc_plain: held-out accuracy of the classifier taught on the images as they are.
        acc_mirrored: the same, taught with mirror images added.
        images: how many training images were used.
        skipped: why the check was not made (too few images, multi-label), else ``""``.
    """

    changes_class: bool
    acc_plain: float = math.nan
    acc_mirrored: float = math.nan
    images: int = 0
    skipped: str = ""

    def summary(self) -> str:
        """One sentence fragment with the numbers, e.g. for the run's reason."""
        if self.skipped:
            return f"not checked: {self.skipped}"
        return (f"a simple classifier taught with mirror images scored {self.acc_mirrored:.2f} instead of "
                f"{self.acc_plain:.2f} on {self.images} training images")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for meta.json."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 4)

        return {"changes_class": self.changes_class, "acc_plain": num(self.acc_plain),
                "acc_mirrored": num(self.acc_mirrored), "images": self.images, "skipped": self.skipped,
                "summary": self.summary()}


@dataclass(frozen=True)
class CheckSample:
    """The training images the image checks look at, drawn once for a run and read by each.

    The mirror check (here) and the turn check (:mod:`core.data.turn_check`) ask their
    questions of the same thumbnails; drawing them once saves the second pass over the images.

    Attributes:
        x: (n, 32, 32) grayscale thumbnails in 0-1, or None when ``skipped``.
        y: their class indices.
        plain: their :func:`orientation_features`.
        skipped: why no sample could be drawn (multi-label data, too few images in a class), else ``""``.
    """

    x: np.ndarray | None = None
    y: np.ndarray | None = None
    plain: np.ndarray | None = None
    skipped: str = ""
    rng_state: dict | None = None  # the generator's state just after the draw

    def rng(self) -> np.random.Generator:
        """A fresh generator that goes on from the draw: each check gets the same numbers as if it
        had drawn the sample itself."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        return rng


def draw_sample(images: Any, labels: Any, seed: int = 0, max_images: int = MAX_IMAGES) -> CheckSample:
    """A stratified sample of at most ``max_images`` training images, as thumbnails and features.

    Args:
        images: uint8 (N, C, H, W) training images (a tensor, an array, or anything indexable
            by an index array that gives one, such as :class:`core.data.ondisk.DiskImages`).
        labels: int (N,) class indices; 2-D (multi-label) labels are not sampled.
        seed: picks the sample; the checks' folds and copies go on from the same generator.
        max_images: the most images looked at.

    Returns:
        A :class:`CheckSample`, with ``skipped`` set when the images cannot be checked.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        return CheckSample(skipped="multi-label data")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < _FOLDS:
        return CheckSample(skipped=f"fewer than {_FOLDS} training images in a class")
    rng = np.random.default_rng(seed)
    pick = stratified_sample(labels, max_images, rng)
    x = thumbnails(images, pick)
    return CheckSample(x, labels[pick], orientation_features(x), rng_state=rng.bit_generator.state)


def check_mirroring(images: Any, labels: Any, seed: int = 0, max_images: int = MAX_IMAGES,
                    sample: CheckSample | None = None) -> MirrorCheck:
    """Whether left-right mirroring changes the class of these images.

    Args:
        images, labels, seed, max_images: as :func:`draw_sample` takes them.
        sample: the sample already drawn from these images with this seed (see
            :func:`draw_sample`); drawn here when None.

    Returns:
        A :class:`MirrorCheck`; ``changes_class`` is False whenever the check could not be made.
    """
    if sample is None:
        sample = draw_sample(images, labels, seed, max_images)
    if sample.skipped:
        return MirrorCheck(False, skipped=sample.skipped)
    rng = sample.rng()
    right_plain, right_mirrored = cross_validate_with_copies(sample.plain, orientation_features(sample.x[..., ::-1]),
                                                             sample.y, rng)
    changes = clearly_worse(*paired_drop(right_plain, right_mirrored))
    return MirrorCheck(bool(changes), float(right_plain.mean()), float(right_mirrored.mean()), int(len(sample.y)))


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(labels) <= n:
        return np.arange(len(labels))
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(_FOLDS, int(round(n * len(idx) / len(labels))))
        picked.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


def thumbnails(images: Any, pick: np.ndarray) -> np.ndarray:
    """(n, 32, 32) grayscale floats in 0-1 (area-averaged; channels averaged)."""
    import torch
    import torch.nn.functional as F

    chunks = []
    for start in range(0, len(pick), 512):
        batch = images[torch.as_tensor(pick[start:start + 512])]
        t = torch.as_tensor(np.asarray(batch)).float().div(255.0)
        if t.ndim == 3:
            t = t[:, None]
        t = t.mean(dim=1, keepdim=True)
        chunks.append(F.interpolate(t, size=(_SIZE, _SIZE), mode="area")[:, 0].numpy())
    return np.concatenate(chunks)


def orientation_features(x: np.ndarray) -> np.ndarray:
    """Orientation histograms (whole image and 2x2 cells, weighted by gradient strength)
    and an 8x8 thumbnail: what a mirror image changes (slants and sides), nothing learned."""
    n = len(x)
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    mag = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), math.pi)  # 0-180 degrees: a slant, not a direction
    bins = np.minimum((angle / math.pi * _BINS).astype(np.int64), _BINS - 1)
    half = _SIZE // 2
    parts = []
    for rows, cols in [(slice(None), slice(None)), (slice(0, half), slice(0, half)), (slice(0, half), slice(half, None)),
                       (slice(half, None), slice(0, half)), (slice(half, None), slice(half, None))]:
        b = bins[:, rows, cols].reshape(n, -1)
        m = mag[:, rows, cols].reshape(n, -1)
        flat = (np.arange(n)[:, None] * _BINS + b).ravel()
        hist = np.bincount(flat, weights=m.ravel(), minlength=n * _BINS).reshape(n, _BINS)
        parts.append(hist / (hist.sum(axis=1, keepdims=True) + 1e-8))
    thumb = x.reshape(n, 8, _SIZE // 8, 8, _SIZE // 8).mean(axis=(2, 4)).reshape(n, -1)
    parts.append(thumb - thumb.mean(axis=1, keepdims=True))
    return np.concatenate(parts, axis=1)


def cross_validate_with_copies(plain: np.ndarray, copies: np.ndarray, y: np.ndarray,
                               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out image: right (1) or wrong (0), taught without and with the transformed
    copies (``copies[i]``: the features of a transformed image ``i``, with its label kept).
    Both are scored on the held-out images as they are."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold

    right_plain = np.zeros(len(y), dtype=np.int8)
    right_copied = np.zeros(len(y), dtype=np.int8)
    folds = StratifiedKFold(n_splits=_FOLDS, shuffle=True, random_state=int(rng.integers(2**31)))
    for train, held in folds.split(plain, y):
        for with_copies, right in ((False, right_plain), (True, right_copied)):
            x_fit = np.concatenate([plain[train], copies[train]]) if with_copies else plain[train]
            y_fit = np.concatenate([y[train], y[train]]) if with_copies else y[train]
            clf = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x_fit, y_fit)
            right[held] = clf.predict(plain[held]) == y[held]
    return right_plain, right_copied


def paired_drop(right_plain: np.ndarray, right_copied: np.ndarray) -> tuple[float, float]:
    """Mean accuracy lost by teaching with the copies, and its standard error (paired)."""
    diff = right_plain.astype(np.float64) - right_copied
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    return float(diff.mean()), se


def clearly_worse(drop: float, se: float) -> bool:
    """Whether a drop counts as a change of class: at least MIN_DROP and MIN_Z standard errors."""
    return drop >= MIN_DROP and (se == 0 or drop / se >= MIN_Z)
