"""Pixel conversions shared by every decoder: any mode to 8-bit "L" or "RGB", 16-bit RGB read
at full depth, the robust 16-to-8-bit stretch, and EXIF orientation.

Kept apart from :mod:`core.data.images` (which opens files and checks them) so the DICOM
reader in :mod:`core.data.dicom` can reuse the same stretch without importing the opener.
"""

from __future__ import annotations

import sys
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image

# The stretch ignores the darkest and brightest 0.5 % of pixels: a few hot pixels, a burnt-in
# marker or a calibration dot must not squeeze the anatomy into a handful of grey levels.
STRETCH_PERCENTILES = (0.5, 99.5)

HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32S"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}

# EXIF orientation tag value -> the transpose that turns the stored pixels upright
# (the table ImageOps.exif_transpose uses; applied here to the converted image, because
# a 16-bit RGB image is rebuilt from arrays and has no EXIF of its own).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112


def stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map any numeric array linearly to uint8 between robust low and high percentiles.

    Values at or below the 0.5th percentile become 0, at or above the 99.5th become 255 (the
    percentiles are taken as actual pixel values, so a tiny image keeps its exact minimum and
    maximum). When those two are equal (a flat background covering 99 % of the image) the
    full minimum..maximum is used instead, so small bright objects are not lost. Non-finite
    values count as the minimum. All channels share one range, so colours keep their balance.

    Args:
        arr: the pixels, any shape and numeric dtype.

    Returns:
        A uint8 array of the same shape.
    """
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    values = a[finite]
    lo = float(np.percentile(values, STRETCH_PERCENTILES[0], method="lower"))
    hi = float(np.percentile(values, STRETCH_PERCENTILES[1], method="higher"))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    a = np.where(finite, a, lo)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint(np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255)).astype(np.uint8)


def to_l_or_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit "L" or "RGB".

    1-bit becomes "L"; 16- and 32-bit grayscale are stretched with :func:`stretch_to_uint8`;
    transparency is composited on black; palette, CMYK, YCbCr, LAB and HSV become "RGB".
    """
    mode = img.mode
    if mode == "L":
        return img.copy()
    if mode == "1":
        return img.convert("L")
    if mode in HIGH_DEPTH_MODES:
        return Image.fromarray(stretch_to_uint8(np.asarray(img)), mode="L")
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


def rgb16_rawmode(img: Image.Image) -> str | None:
    """The raw mode when ``img`` (opened, not loaded) stores 16 bits per colour channel.

    Pillow has no 16-bit colour mode: it opens such a PNG or TIFF as 8-bit "RGB"/"RGBA" and
    keeps only the high byte of each sample, so 12-bit values (0..4095) come out as 0..15.

    Returns:
        e.g. ``"RGB;16B"``, or None for every other image.
    """
    if img.mode not in ("RGB", "RGBA", "RGBX") or not img.tile:
        return None
    args = img.tile[0].args
    raw = args if isinstance(args, str) else (args[0] if args else None)
    if isinstance(raw, str) and raw.startswith(img.mode + ";16") and raw[-1] in "BLN":
        return raw
    return None


def read_rgb16(open_image: Callable[[], Image.Image], rawmode: str) -> np.ndarray:
    """Decode a 16-bit-per-channel colour image at full depth.

    Pillow's unpacker keeps one byte of each 16-bit sample: the high one for the file's own
    byte order, the low one when told the opposite order. Both decodes run the same
    decompression and PNG unfiltering (on whole 16-bit pixels), so decoding twice and
    joining the bytes gives the exact samples with nothing but Pillow.

    Args:
        open_image: returns the image freshly opened (and on the wanted frame), not loaded.
        rawmode: what :func:`rgb16_rawmode` returned.

    Returns:
        uint16 (H, W, 3) colour, alpha dropped after compositing on black.
    """
    base, order = rawmode[:-1], rawmode[-1]
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    swapped = base + ("L" if order == "B" else "B")
    planes = []
    for raw in (None, swapped):
        img = open_image()
        if raw is not None:
            img.tile = [t._replace(args=raw if isinstance(t.args, str) else (raw, *t.args[1:])) for t in img.tile]
        img.load()
        planes.append(np.asarray(img).astype(np.uint16))
    arr = (planes[0] << 8) | planes[1]
    if arr.shape[-1] == 4:
        if img.mode == "RGBA":
            alpha = arr[..., 3:].astype(np.uint32)
            return ((arr[..., :3].astype(np.uint32) * alpha + 32767) // 65535).astype(np.uint16)
        return np.ascontiguousarray(arr[..., :3])
    return arr


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 (upright) when absent or unreadable."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # damaged EXIF must not cost the image
        return 1
    return int(value) if isinstance(value, int) and value in _ORIENTATION else 1


def apply_orientation(img: Image.Image, value: int) -> Image.Image:
    """Turn an image upright for EXIF orientation ``value`` (a camera or phone photo on its side)."""
    method = _ORIENTATION.get(value)
    return img.transpose(method) if method is not None else img


def read_head(fp: BinaryIO, n: int) -> bytes:
    """The first ``n`` bytes of a seekable file, leaving it at the start."""
    fp.seek(0)
    head = fp.read(n)
    fp.seek(0)
    return head
