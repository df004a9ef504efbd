"""Does an image fit the model? Warnings, in words, when an upload is unlike its training data.

A model answers every image it is given, also a CT slice shown to a breast-ultrasound
model. These checks say when an answer should not be trusted because the image is unlike
what the model learned from:

* channels: a colour image for a model trained on grayscale images, or the other way round;
* size: an image much smaller than the model's input (it is enlarged, so blurred), or far
  from square (it is stretched to a square, which distorts shapes);
* pixel statistics: the image's brightness (mean) or contrast (standard deviation) far
  outside the range of the training images, recorded in the run at training time by
  :func:`training_image_stats` (runs trained before that have none; then only the other
  checks run, and :attr:`FitCheck.note` says so);
* the model's own signal: predictive entropy close to that of a blind guess.

None of these proves the answer wrong, and passing them does not prove it right; they catch
the gross mismatches that otherwise give a confident-looking label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Version of the recorded statistics (a later layout can still read older runs).
STATS_VERSION = 1

#: Training images sampled for the statistics: plenty for percentiles, cheap at any size.
STATS_SAMPLE = 2000

#: Percentiles of the per-image mean and standard deviation that are recorded.
PERCENTILES = (0.5, 5, 50, 95, 99.5)

#: An upload whose shorter side is below this fraction of the model's input is "too small".
SMALL_FRACTION = 0.5

#: Longer side over shorter side above which an upload counts as far from square.
MAX_ASPECT = 1.6

#: Beyond the training range (0.5th to 99.5th percentile) by more than this fraction of the
#: range's width (and at least MIN_MARGIN on the 0-1 scale) counts as "far outside".
MARGIN_FRACTION = 0.25
MIN_MARGIN = 0.03

#: Normalised predictive entropy above which the model is "nearly as unsure as a guess"
#: (for two classes: a top probability below about 61 %).
HIGH_ENTROPY = 0.95


@dataclass(frozen=True)
class FitWarning:
    """One reason an image may not fit the model.

    Attributes:
        reason: a short phrase for a table cell, e.g. ``"colour image, grayscale model"``.
        text: the full sentence for a person.
    """

    reason: str
    text: str


@dataclass(frozen=True)
class FitCheck:
    """The outcome of :func:`check_fit`.

    Attributes:
        warnings: what does not fit, most basic first (channels, size, statistics, entropy).
        note: what could not be checked and why (``""`` when everything was).
    """

    warnings: list[FitWarning] = field(default_factory=list)
    note: str = ""

    @property
    def fits(self) -> bool:
        """True when no check warned."""
        return not self.warnings

    def reasons(self) -> str:
        """The short reasons joined by ``"; "`` (``""`` when the image fits): the CSV column."""
        return "; ".join(w.reason for w in self.warnings)


def training_image_stats(images: Any, sample: int = STATS_SAMPLE) -> dict[str, Any]:
    """Compact statistics of the training images, to store with the run.

    Args:
        images: uint8 (N, C, H, W) tensor (or :class:`core.data.ondisk.DiskImages`).
        sample: at most this many images, evenly spaced (deterministic), are measured.

    Returns:
        ``{"version", "channels", "size": [H, W], "n", "mean", "std",
        "image_mean": {"p0.5", "p5", "p50", "p95", "p99.5"}, "image_std": {...}}``: per-channel
        values on a 0-1 scale; ``mean``/``std`` over all sampled pixels, ``image_mean`` and
        ``image_std`` percentiles of each image's own mean and standard deviation.
    """
    n, c, h, w = (int(v) for v in images.shape)
    if n == 0:
        raise ValueError("training_image_stats needs at least one image")
    idx = np.unique(np.linspace(0, n - 1, min(n, sample)).round().astype(np.int64))
    means, stds = [], []
    for start in range(0, len(idx), 256):  # bounded memory at 224 px
        part = idx[start:start + 256]
        x = _as_float(images[torch_index(part)])
        means.append(x.mean(axis=(2, 3)))
        stds.append(x.std(axis=(2, 3)))
    m, s = np.concatenate(means), np.concatenate(stds)
    pooled_std = np.sqrt((s ** 2).mean(axis=0) + m.var(axis=0))
    return {
        "version": STATS_VERSION, "channels": c, "size": [h, w], "n": int(len(idx)),
        "mean": _r(m.mean(axis=0)), "std": _r(pooled_std),
        "image_mean": {f"p{p:g}": _r(np.percentile(m, p, axis=0)) for p in PERCENTILES},
        "image_std": {f"p{p:g}": _r(np.percentile(s, p, axis=0)) for p in PERCENTILES},
    }


def image_stats(tensor_u8: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (0-1 scale) of one uint8 (C, H, W) image."""
    x = _as_float(tensor_u8)
    x = x.reshape((1,) + x.shape[-3:])
    return x.mean(axis=(2, 3))[0], x.std(axis=(2, 3))[0]


def source_facts(image: Any) -> dict[str, Any]:
    """What the checks need of the uploaded file as decoded, before resizing.

    Args:
        image: a PIL image (from :func:`core.data.decode_image`).

    Returns:
        ``{"colour": bool, "width": int, "height": int}``; an RGB image whose three bands
        are equal counts as grayscale.
    """
    from core.data import is_grayscale

    return {"colour": not is_grayscale(image), "width": int(image.width), "height": int(image.height)}


def check_fit(tensor_u8: Any, model_channels: int, model_size: int, stats: dict | None = None,
              source: dict | None = None, entropy_norm: float | None = None) -> FitCheck:
    """Warn when an image is unlike the model's training data.

    Args:
        tensor_u8: the image as the model sees it: uint8 (C, H, W) at the model's size.
        model_channels: 1 (grayscale model) or 3 (colour model).
        model_size: the model's input side in pixels.
        stats: the run's :func:`training_image_stats`, or None for an older run.
        source: :func:`source_facts` of the decoded upload (None skips the colour and size
            checks, e.g. when only the tensor is known).
        entropy_norm: the prediction's normalised entropy (0 certain, 1 a uniform guess);
            None skips that check.

    Returns:
        The :class:`FitCheck`.
    """
    found: list[FitWarning] = []
    if source is not None:
        found += _channel_warnings(source, model_channels)
        found += _size_warnings(source, model_size)
    note = ""
    if _usable_stats(stats, model_channels):
        found += _stat_warnings(tensor_u8, stats)
    else:
        note = ("This run has no record of its training images' brightness and contrast (it was trained by an "
                "older version), so those were not compared; train it again to get that check.")
    if entropy_norm is not None and entropy_norm >= HIGH_ENTROPY:
        found.append(FitWarning(
            "model nearly as unsure as a guess",
            f"The model is nearly as unsure as a blind guess (normalised entropy {entropy_norm:.2f}, where 1 is a "
            "uniform guess): it may never have seen images like this one."))
    return FitCheck(found, note)


# --------------------------------------------------------------------------- the checks
def _channel_warnings(source: dict, model_channels: int) -> list[FitWarning]:
    if source.get("colour") and model_channels == 1:
        return [FitWarning("colour image, grayscale model",
                           "This is a colour image, but the model was trained on grayscale images; it was turned "
                           "gray to be classified, and it may be another kind of image than the model knows.")]
    if source.get("colour") is False and model_channels == 3:
        return [FitWarning("grayscale image, colour model",
                           "This is a grayscale image, but the model was trained on colour images; it may come "
                           "from another kind of scan or camera than the model knows.")]
    return []


def _size_warnings(source: dict, model_size: int) -> list[FitWarning]:
    w, h = int(source.get("width") or 0), int(source.get("height") or 0)
    if w <= 0 or h <= 0:
        return []
    out = []
    if min(w, h) < SMALL_FRACTION * model_size:
        out.append(FitWarning(
            "image much smaller than the model's input",
            f"This image is only {w} × {h} px, much smaller than the {model_size} × {model_size} px the model "
            "works at; enlarging it blurs it, so the answer may not hold."))
    if max(w, h) / min(w, h) > MAX_ASPECT:
        out.append(FitWarning(
            "far from square",
            f"This image is {w} × {h} px, far from square; it was stretched to a square like the training "
            "images, which distorts shapes, so crop it to the region of interest first."))
    return out


def _stat_warnings(tensor_u8: Any, stats: dict) -> list[FitWarning]:
    mean, std = image_stats(tensor_u8)
    out = []
    for what, value, table in (("brightness", mean, stats["image_mean"]), ("contrast", std, stats["image_std"])):
        lo, hi = np.asarray(table["p0.5"], dtype=np.float64), np.asarray(table["p99.5"], dtype=np.float64)
        margin = np.maximum(MARGIN_FRACTION * (hi - lo), MIN_MARGIN)
        outside = (value < lo - margin) | (value > hi + margin)
        if outside.any():
            k = int(np.argmax(np.abs(value - (lo + hi) / 2) - (hi - lo) / 2))
            channel = f" ({['red', 'green', 'blue'][k]} channel)" if len(value) == 3 else ""
            direction = ("higher" if value[k] > hi[k] else "lower")
            out.append(FitWarning(
                f"{what} unlike the training images",
                f"Its {what}{channel}, {value[k]:.2f} on a 0–1 scale, is far {direction} than in the training "
                f"images ({lo[k]:.2f} to {hi[k]:.2f}); it is probably another kind of image than the model "
                "learned from."))
    return out


def _usable_stats(stats: Any, channels: int) -> bool:
    try:
        return (isinstance(stats, dict) and int(stats.get("channels", -1)) == channels
                and all(len(stats[t][p]) == channels for t in ("image_mean", "image_std") for p in ("p0.5", "p99.5")))
    except (KeyError, TypeError, ValueError):
        return False


def torch_index(idx: np.ndarray) -> Any:
    """A 1-D index that both a torch tensor and DiskImages accept."""
    import torch

    return torch.from_numpy(idx)


def _as_float(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 3:
        a = a[None]
    return a.astype(np.float64) / 255.0


def _r(a: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in np.atleast_1d(a)]
