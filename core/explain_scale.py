"""Putting an attribution map on a readable scale.

Min-max scaling (:func:`normalize_map`) suits maps whose values spread evenly (Grad-CAM,
occlusion). Integrated Gradients concentrate on a few pixels with very large values; scaled
min-max, everything else is nearly black. :func:`robust_normalize` scales by a high percentile instead.
"""

from __future__ import annotations

import numpy as np

#: Integrated Gradients are scaled per image by this percentile of their magnitude (then
#: clipped to 1): a min-max scale lets a handful of extreme pixels turn everything else
#: dark, so the map showed almost nothing.
IG_PERCENTILE = 99.0

#: A map whose range is within this many units of round-off (of its own float type) of its
#: largest magnitude is flat: what it shows is arithmetic noise, not the model.
FLAT_ULPS = 64


def robust_normalize(heat: np.ndarray, percentile: float = IG_PERCENTILE) -> np.ndarray:
    """Scale a map's magnitude per image by a robust top value, as float32 in [0, 1].

    ``|heat|`` is divided by its ``percentile``-th percentile and clipped to 1, so the
    strongest ``100 - percentile`` % of pixels saturate and the rest keep a readable scale
    (a min-max scale lets a few extreme pixels darken everything else). When that
    percentile is 0 (a sparse map), the maximum is used instead.

    Args:
        heat: any real array; non-finite values count as 0.
        percentile: in (0, 100].

    Returns:
        The scaled array; all zeros for an empty or all-zero map (or one that is flat up to
        round-off, as :func:`normalize_map`), never NaN.
    """
    a = np.abs(np.nan_to_num(np.asarray(heat, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0))
    if a.size == 0:
        return a.astype(np.float32)
    top = float(np.percentile(a, percentile))
    if top <= 0.0:
        top = float(a.max())
    if top <= 0.0 or not np.isfinite(top):
        return np.zeros(a.shape, dtype=np.float32)
    return (a / top).clip(0.0, 1.0).astype(np.float32)


def normalize_map(heat: np.ndarray) -> np.ndarray:
    """Min-max scale a map to [0, 1] as float32; non-finite values count as 0.

    Args:
        heat: any real array.

    Returns:
        The scaled array; all zeros when the map is constant up to round-off of its float
        type (:data:`FLAT_ULPS`; nothing to show), never NaN.
    """
    raw = np.asarray(heat)
    # Round-off of the input's own precision: a float32 map that is flat up to a few ulps
    # (a 1 x 1 Grad-CAM map upsampled bilinearly) must not become a full-range pattern.
    eps = float(np.finfo(raw.dtype).eps) if np.issubdtype(raw.dtype, np.floating) else float(np.finfo(np.float64).eps)
    a = np.nan_to_num(raw.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if a.size == 0:
        return a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= FLAT_ULPS * eps * max(abs(hi), abs(lo)):
        return np.zeros(a.shape, dtype=np.float32)
    return ((a - lo) / (hi - lo)).clip(0.0, 1.0).astype(np.float32)
