"""Decode untrusted image files into 8-bit grayscale or RGB, and turn them into tensors.

Shared by the folder importer, the Classify page and batch prediction, so every image the
studio sees goes through the same checks: a file that is not an image, is truncated, or
would expand to an enormous bitmap raises :class:`core.errors.DataError`, never anything else.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.errors import ConfigError, DataError

# 40 megapixels is well above any medical photo or scan a classifier at <= 224 px needs,
# and keeps a decoded RGBA bitmap under about 160 MB.
MAX_PIXELS = 40_000_000

# What the folder importer picks up (by extension; the content decides the decoder).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")
_QUOTED_PATH = re.compile(r"""(['"])/[^'"]*\1""")

_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32S"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def decode_image(
    data: bytes | str | os.PathLike,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode an image file fully and return it as 8-bit grayscale ("L") or RGB.

    Conversions: 1-bit becomes "L"; 16-bit and 32-bit grayscale ("I;16", "I", "F") are
    stretched linearly from the image's own minimum..maximum to 0..255 (16-bit scans rarely
    use the full range, so a fixed divisor would leave them almost black); CMYK, YCbCr, LAB,
    HSV and palette images become "RGB"; transparency is composited on black (most medical
    images have a dark background), so "LA" becomes "L" and "RGBA"/"PA" become "RGB". Of an
    animated GIF or multi-page TIFF only the first frame is used.

    Args:
        data: the file's bytes, or its path.
        max_pixels: the largest width x height accepted; checked from the header before any
            pixel is decoded, so a small file that claims a huge bitmap costs nothing.
        name: what to call the image in error messages (defaults to the file name).

    Returns:
        A loaded PIL image in mode "L" or "RGB", detached from the file.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        label = name or "the uploaded file"
        fp = io.BytesIO(bytes(data))
    elif isinstance(data, (str, os.PathLike)):
        label = name or Path(data).name
        try:
            fp = open(data, "rb")
        except OSError as exc:
            raise DataError(f"{label} could not be opened ({exc.strerror or exc}); check that the file exists and is readable") from exc
    else:
        raise TypeError(f"decode_image takes bytes or a path, not {type(data).__name__}")

    with fp:
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise DataError(f"{label} declares an enormous bitmap ({_reason(exc)}); downscale it below {max_pixels / 1e6:g} megapixels first") from exc
        except Exception as exc:  # Pillow raises many types on hostile input
            raise DataError(f"{label} is not an image that can be read ({_reason(exc)}); use a PNG, JPEG, BMP or TIFF file") from exc
        with img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise DataError(f"{label} has an empty size ({width} x {height}); use another file")
            if width * height > max_pixels:
                raise DataError(
                    f"{label} is {width} x {height} pixels, more than the limit of {max_pixels / 1e6:g} "
                    "megapixels; downscale it before importing"
                )
            try:
                img.seek(0)  # first frame of animations and multi-page TIFFs
                img.load()  # decode every pixel now, so truncation shows up here
                return _to_l_or_rgb(img)
            except Exception as exc:
                raise DataError(f"{label} is damaged or truncated ({_reason(exc)}); export it again or leave it out") from exc


def _reason(exc: BaseException) -> str:
    """Why Pillow refused a file, in words fit for a person.

    Pillow's messages name the file object (``<_io.BytesIO object at 0x7f...>``) or the
    server-side path; neither means anything to the person who uploaded the file.
    """
    if isinstance(exc, UnidentifiedImageError):
        return "its content is not a known image format"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _OBJECT_REPR.sub("the file", text)
    text = _QUOTED_PATH.sub("the file", text)
    return text[:120]


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "L":
        return img.copy()
    if mode == "1":
        return img.convert("L")
    if mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_stretch_to_uint8(np.asarray(img)), mode="L")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        arr = np.asarray(img)
        colour, alpha = arr[..., :-1], arr[..., -1:]
        if mode not in ("La", "RGBa"):  # premultiplied modes are already "on black"
            colour = ((colour.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
        if colour.shape[-1] == 1:
            return Image.fromarray(np.ascontiguousarray(colour[..., 0]), mode="L")
        return Image.fromarray(np.ascontiguousarray(colour), mode="RGB")
    return img.convert("RGB")  # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX


def _stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = a[finite].min(), a[finite].max()
    a = np.where(finite, a, lo)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def is_grayscale(img: Image.Image) -> bool:
    """Whether an "L" or "RGB" image carries no colour (an RGB image with equal bands counts)."""
    if img.mode == "L":
        return True
    if img.mode != "RGB":
        return False
    arr = np.asarray(img)
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def image_to_tensor(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Resize an image to ``size`` x ``size`` and return it as a uint8 (C, size, size) tensor.

    The image is stretched to a square (no crop, so nothing at the border is lost). Resizing is
    bilinear; when shrinking, Pillow widens the filter to the scale factor, which antialiases.
    RGB becomes grayscale by Pillow's luminance weights (ITU-R 601-2); grayscale becomes RGB
    by repeating the band.

    Args:
        img: a PIL image, ideally from :func:`decode_image`.
        size: the output side in pixels.
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        A contiguous uint8 tensor of shape (channels, size, size).
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels!r}")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"image size must be a positive whole number of pixels, not {size!r}")
    if img.mode not in ("L", "RGB"):
        img = _to_l_or_rgb(img)
    want = "L" if channels == 1 else "RGB"
    if img.mode != want:
        img = img.convert(want)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    t = torch.from_numpy(np.array(img, dtype=np.uint8))
    if t.ndim == 2:
        return t.unsqueeze(0).contiguous()
    return t.permute(2, 0, 1).contiguous()
