"""Decode untrusted image files into 8-bit grayscale or RGB, and turn them into tensors.

Shared by the folder importer, the Classify page and batch prediction, so every image the
studio sees goes through the same checks: a file that is not an image, is truncated, is
larger than :data:`MAX_FILE_BYTES`, or would expand to an enormous bitmap raises
:class:`core.errors.DataError`, never anything else. Sizes are checked before anything is
read (``stat`` of a path, the length of bytes) and the bitmap size from the header before any
pixel is decoded, so a huge file costs neither memory nor time. DICOM files (by extension, or
by the ``DICM`` preamble whatever their name) are read by :mod:`core.data.dicom`.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.data.dicom import DICOM_EXTENSIONS, is_dicom_name, looks_like_dicom, read_dicom, sniff_dicom
from core.data.pixels import (apply_orientation, orientation, read_head, read_rgb16, rgb16_rawmode,
                              stretch_to_uint8, to_l_or_rgb)
from core.errors import ConfigError, DataError

# 40 megapixels is well above any medical photo or scan a classifier at <= 224 px needs,
# and keeps a decoded RGBA bitmap under about 160 MB.
MAX_PIXELS = 40_000_000

# 512 MB is more than a 40-megapixel 16-bit RGB TIFF stored uncompressed (240 MB) or a
# multi-frame DICOM series of a few hundred slices; anything larger is refused unread.
MAX_FILE_BYTES = 512 * 1024**2

# What the folder importer picks up by name (the content decides the decoder); files with
# another name are still taken when they start with the DICOM preamble.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff") + DICOM_EXTENSIONS

_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")
_QUOTED_PATH = re.compile(r"""(['"])/[^'"]*\1""")


@dataclass(frozen=True)
class DecodedImage:
    """An image from :func:`read_image` and what the person should know about how it was read.

    Attributes:
        image: a loaded PIL image in mode "L" or "RGB".
        notes: sentences such as "this TIFF has 3 pages; page 1 was used" (empty for most files).
    """

    image: Image.Image
    notes: tuple[str, ...] = ()


def is_image_candidate(path: str | os.PathLike) -> bool:
    """Whether a file is worth decoding: an image extension, or the DICOM preamble (scanners
    often write DICOM files with no extension, or names like ``1.2.840.10008.3``)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS or sniff_dicom(path)


def decode_image(
    data: bytes | str | os.PathLike | BinaryIO,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
    *,
    frame: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> Image.Image:
    """Decode an image file fully and return it as 8-bit grayscale ("L") or RGB.

    The same as :func:`read_image` without the notes; see there for the conversions.

    Returns:
        A loaded PIL image in mode "L" or "RGB", detached from the file.
    """
    return read_image(data, max_pixels, name, frame=frame, max_bytes=max_bytes).image


def read_image(
    data: bytes | str | os.PathLike | BinaryIO,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
    *,
    frame: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> DecodedImage:
    """Decode an image file to 8-bit "L" or "RGB", with notes on how it was read.

    Conversions: 1-bit becomes "L"; 16-bit and 32-bit grayscale and 16-bit-per-channel RGB
    keep their full depth and are stretched to 0..255 between the 0.5th and 99.5th
    percentiles (so a few outlier pixels do not flatten the rest; see
    :func:`core.data.pixels.stretch_to_uint8`); CMYK, YCbCr, LAB, HSV and palette images become
    "RGB"; transparency is composited on black (most medical images have a dark background).
    An EXIF orientation (a photo taken on its side) is applied, so the image is upright. DICOM
    is read by :func:`core.data.dicom.read_dicom` (rescale, window, MONOCHROME1). Of a
    multi-frame file one frame is used: the first page of a TIFF or frame of a GIF, the middle
    frame of a DICOM series, unless ``frame`` says otherwise; a note says which.

    Args:
        data: the file's bytes, its path, or a seekable binary file (read from its start and
            left open).
        max_pixels: the largest width x height accepted; checked from the header before any
            pixel is decoded, so a small file that claims a huge bitmap costs nothing.
        name: what to call the image in error messages (defaults to the file name).
        frame: the frame (page) of a multi-frame file to use, counting from 1; ignored for a
            file with one frame.
        max_bytes: the largest file accepted, checked before anything is read.

    Returns:
        The loaded image, detached from the file, and its notes.
    """
    label, fp, owned, nbytes = _open(data, name)
    try:
        if nbytes > max_bytes:
            raise DataError(
                f"{label} is {file_size_text(nbytes)}, more than the limit of {file_size_text(max_bytes)} for one image file; "
                "export a smaller image (or a single frame) instead"
            )
        head = read_head(fp, 132)
        if looks_like_dicom(head) or is_dicom_name(name or label):
            image, notes = read_dicom(fp, label, max_pixels, frame)
            return DecodedImage(image, tuple(notes))
        return _read_pil(fp, label, max_pixels, frame)
    except OSError as exc:
        raise DataError(f"{label} could not be read ({exc.strerror or 'read error'}); check that the file is readable") from exc
    finally:
        if owned:
            fp.close()


def _open(data, name: str | None) -> tuple[str, BinaryIO, bool, int]:
    """``(label, seekable file at its start, whether we close it, its size in bytes)``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        return name or "the uploaded file", io.BytesIO(raw), True, len(raw)
    if isinstance(data, (str, os.PathLike)):
        label = name or Path(data).name
        try:
            fp = open(data, "rb")
        except OSError as exc:
            raise DataError(f"{label} could not be opened ({exc.strerror or exc}); check that the file exists and is readable") from exc
        return label, fp, True, os.fstat(fp.fileno()).st_size
    if hasattr(data, "read") and hasattr(data, "seek"):
        nbytes = data.seek(0, io.SEEK_END)
        data.seek(0)
        return name or "the uploaded file", data, False, int(nbytes)
    raise TypeError(f"decode_image takes bytes, a path or a binary file, not {type(data).__name__}")


def file_size_text(nbytes: int) -> str:
    """A file size for a person: "3.0 GB" or "512 MB"."""
    return f"{nbytes / 1024**3:.1f} GB" if nbytes >= 1024**3 else f"{nbytes / 1024**2:.0f} MB"


def _read_pil(fp: BinaryIO, label: str, max_pixels: int, frame: int | None) -> DecodedImage:
    try:
        img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{label} declares an enormous bitmap ({_reason(exc)}); downscale it below {max_pixels / 1e6:g} megapixels first") from exc
    except Exception as exc:  # Pillow raises many types on hostile input
        raise DataError(f"{label} is not an image that can be read ({_reason(exc)}); use a PNG, JPEG, BMP, TIFF or DICOM file") from exc
    with img:
        _check_pixels(label, img, max_pixels)
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
        except Exception:  # counting frames walks the file; a damaged one may fail there
            frames = 1
        index, notes = _pick_frame(label, frames, frame, "page" if img.format == "TIFF" else "frame", img.format)
        try:
            img.seek(index)
            _check_pixels(label, img, max_pixels)  # TIFF pages can differ in size
            rawmode = rgb16_rawmode(img)  # first: reading a PNG's EXIF loads it, which clears the tile
            turn = orientation(img)
            if rawmode is not None:
                out = Image.fromarray(stretch_to_uint8(read_rgb16(lambda: _reopen(fp, index), rawmode)), mode="RGB")
            else:
                img.load()  # decode every pixel now, so truncation shows up here
                out = to_l_or_rgb(img)
            return DecodedImage(apply_orientation(out, turn), tuple(notes))
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{label} is damaged or truncated ({_reason(exc)}); export it again or leave it out") from exc


def _check_pixels(label: str, img: Image.Image, max_pixels: int) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise DataError(f"{label} has an empty size ({width} x {height}); use another file")
    if width * height > max_pixels:
        raise DataError(
            f"{label} is {width} x {height} pixels, more than the limit of {max_pixels / 1e6:g} "
            "megapixels; downscale it before importing"
        )


def _reopen(fp: BinaryIO, index: int) -> Image.Image:
    fp.seek(0)
    img = Image.open(fp)
    img.seek(index)
    return img


def _pick_frame(label: str, frames: int, frame: int | None, word: str, fmt: str | None) -> tuple[int, list[str]]:
    if frames <= 1:
        return 0, []
    what = f"this {fmt or 'file'} has {frames} {word}s"
    if frame is None:
        return 0, [f"{what}; {word} 1 was used"]
    if isinstance(frame, bool) or not isinstance(frame, int) or not 1 <= frame <= frames:
        raise DataError(f"{label} has {frames} {word}s, so there is no {word} {frame}; choose one from 1 to {frames}")
    return frame - 1, [f"{what}; {word} {frame} was used, as asked"]


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
        img = to_l_or_rgb(img)
    want = "L" if channels == 1 else "RGB"
    if img.mode != want:
        img = img.convert(want)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    t = torch.from_numpy(np.array(img, dtype=np.uint8))
    if t.ndim == 2:
        return t.unsqueeze(0).contiguous()
    return t.permute(2, 0, 1).contiguous()
