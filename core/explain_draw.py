"""Drawing an attribution map: colour maps and the overlay of a map on its image.

:func:`core.explain.explain` makes the ``H x W`` map in [0, 1]; these functions only paint it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.errors import StudioError

COLORMAPS = ("jet", "hot", "gray")

# Piecewise-linear colour maps: (position, (r, g, b)) anchors in [0, 1].
_ANCHORS = {
    # MATLAB's jet: dark blue -> blue -> cyan -> yellow -> red -> dark red.
    "jet": [(0.0, (0.0, 0.0, 0.5)), (0.11, (0.0, 0.0, 1.0)), (0.125, (0.0, 0.0, 1.0)), (0.34, (0.0, 0.86, 1.0)),
            (0.35, (0.0, 0.9, 0.97)), (0.375, (0.0, 1.0, 0.9)), (0.64, (1.0, 1.0, 0.0)), (0.65, (1.0, 0.95, 0.0)),
            (0.89, (1.0, 0.0, 0.0)), (0.91, (0.95, 0.0, 0.0)), (1.0, (0.5, 0.0, 0.0))],
    # black -> red -> yellow -> white.
    "hot": [(0.0, (0.04, 0.0, 0.0)), (0.365, (1.0, 0.0, 0.0)), (0.746, (1.0, 1.0, 0.0)), (1.0, (1.0, 1.0, 1.0))],
    "gray": [(0.0, (0.0, 0.0, 0.0)), (1.0, (1.0, 1.0, 1.0))],
}


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map values in [0, 1] to colours.

    Args:
        heatmap: an (H, W) array; values are clipped to [0, 1], NaN counts as 0.
        colormap: one of :data:`COLORMAPS`.

    Returns:
        uint8 (H, W, 3) RGB.
    """
    if colormap not in _ANCHORS:
        raise StudioError(f"unknown colour map '{colormap}'; choose one of: {', '.join(COLORMAPS)}.")
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=0.0).clip(0.0, 1.0)
    pos = np.array([a[0] for a in _ANCHORS[colormap]])
    rgb = np.array([a[1] for a in _ANCHORS[colormap]])
    out = np.stack([np.interp(h, pos, rgb[:, k]) for k in range(3)], axis=-1)
    return np.rint(out * 255).astype(np.uint8)


def _image_rgb(image: Any) -> np.ndarray:
    """PIL image, (H, W) / (H, W, 3) array or (C, H, W) tensor -> uint8 (H, W, 3)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        a = t.numpy()
    else:
        a = np.asarray(image)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0  # a float image in [0, 1]
        a = np.rint(np.nan_to_num(a.astype(np.float64))).clip(0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise StudioError(f"overlay() takes a grayscale or RGB image, not an array of shape {a.shape}.")
    return np.ascontiguousarray(a)


def overlay(image: Any, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet"):
    """Blend a coloured heatmap over an image.

    Args:
        image: a PIL image, a uint8 array (H, W) or (H, W, 3), or a (C, H, W) tensor
            (uint8, or float in [0, 1]).
        heatmap: an (h, w) map in [0, 1] (from :func:`explain`); resized bilinearly to the
            image's size, which is right because the studio stretches images to a square
            without cropping.
        alpha: weight of the heatmap colour (0 shows only the image, 1 only the map).
        colormap: one of :data:`COLORMAPS`.

    Returns:
        An RGB PIL image of the image's size.
    """
    from PIL import Image

    if not 0.0 <= float(alpha) <= 1.0:
        raise StudioError(f"overlay alpha must be between 0 and 1, not {alpha}.")
    base = _image_rgb(image)
    h, w = base.shape[:2]
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)
    if heat.ndim != 2:
        raise StudioError(f"overlay() takes an (H, W) heatmap, not shape {heat.shape}.")
    if heat.shape != (h, w):
        heat = np.asarray(Image.fromarray(heat).resize((w, h), Image.Resampling.BILINEAR))
    colour = colorize(heat, colormap).astype(np.float32)
    blended = (1.0 - alpha) * base.astype(np.float32) + alpha * colour
    return Image.fromarray(np.rint(blended).clip(0, 255).astype(np.uint8))
