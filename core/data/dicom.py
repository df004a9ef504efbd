"""DICOM files as clinicians have them: read with pydicom into an 8-bit "L" or "RGB" image.

What is applied, in the order the DICOM standard (PS3.3 C.11) gives: the modality LUT
(Rescale Slope / Intercept, or a Modality LUT Sequence), then the file's own VOI LUT or
window (Window Center / Width with its VOI LUT Function), or the robust percentile stretch of
:func:`core.data.pixels.stretch_to_uint8` when the file has none; MONOCHROME1 (white is zero)
is inverted so bone is bright as in MONOCHROME2; colour data (RGB, YBR, palette) becomes RGB.
Of a multi-frame file one frame is decoded (the middle one unless another is asked for), and
only that frame's bytes are read.

Privacy: only the image-pixel group (0028) and the file meta group are ever parsed; patient-
identifying attributes (PatientName, PatientID, PatientBirthDate, ...) are skipped over as raw
bytes, and messages never quote a pydicom message (which could echo a value).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from core.data.pixels import read_head, stretch_to_uint8
from core.errors import DataError

DICOM_EXTENSIONS = (".dcm", ".dicom")
_MAGIC_AT, _MAGIC = 128, b"DICM"

# The only attributes read besides the file meta: the image pixel module and the LUTs.
HEADER_TAGS = [
    "SpecificCharacterSet", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
    "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
]


def looks_like_dicom(head: bytes) -> bool:
    """Whether a file's first 132 bytes are a DICOM Part 10 preamble (``DICM`` at byte 128)."""
    return len(head) >= _MAGIC_AT + 4 and head[_MAGIC_AT:_MAGIC_AT + 4] == _MAGIC


def is_dicom_name(name: str) -> bool:
    """Whether a file name has a DICOM extension (.dcm, .dicom)."""
    return Path(name).suffix.lower() in DICOM_EXTENSIONS


def sniff_dicom(path: str | Path) -> bool:
    """Whether the file at ``path`` starts with the DICOM preamble (False when unreadable)."""
    try:
        with open(path, "rb") as fp:
            return looks_like_dicom(fp.read(_MAGIC_AT + 4))
    except OSError:
        return False


@contextmanager
def _quiet():
    # pydicom warns (and logs) about odd values; a warning may quote an element's value, and a
    # log line lands in worker.log, so neither may escape while a visitor's file is read.
    log = logging.getLogger("pydicom")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def read_dicom(fp: BinaryIO, label: str, max_pixels: int, frame: int | None = None) -> tuple[Image.Image, list[str]]:
    """Decode one frame of a DICOM file to an 8-bit "L" or "RGB" image.

    Args:
        fp: the file, open in binary mode and seekable.
        label: what to call it in messages.
        max_pixels: the largest rows x columns accepted, checked from the header first.
        frame: which frame of a multi-frame file, counting from 1; None for the middle one.

    Returns:
        ``(image, notes)``: notes say which frame of a multi-frame file was used.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = not looks_like_dicom(read_head(fp, _MAGIC_AT + 4))  # a .dcm without the preamble
    try:
        with _quiet():
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=force)
    except InvalidDicomError as exc:
        raise DataError(f"{label} is not a DICOM file that can be read (it has no DICOM header); export it again from the viewer or PACS") from exc
    except Exception as exc:
        raise DataError(f"{label} is not a DICOM file that can be read (its header is damaged or cut short); export it again from the viewer or PACS") from exc
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if force and "Rows" not in ds and "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # force=True parses any bytes as *something*; without the preamble, a file meta or
        # image attributes, it is not DICOM at all (a text file named .dcm).
        raise DataError(f"{label} is not a DICOM file that can be read (it has no DICOM header); export it again from the viewer or PACS")
    if rows <= 0 or cols <= 0:
        raise DataError(f"{label} holds no image (no pixel rows and columns: a DICOM report or structured document?); use an image series instead")
    if rows * cols > max_pixels:
        raise DataError(f"{label} is {cols} x {rows} pixels, more than the limit of {max_pixels / 1e6:g} megapixels; downscale it before importing")
    frames = max(1, _int(ds, "NumberOfFrames", 1))
    index, notes = _pick_frame(label, frames, frame)
    arr = _decode(fp, ds, label, index)
    return _to_image(arr, ds, label), notes


def _int(ds, keyword: str, default: int = 0) -> int:
    try:
        value = ds.get(keyword, default)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _pick_frame(label: str, frames: int, frame: int | None) -> tuple[int, list[str]]:
    if frame is not None and frames > 1:
        if isinstance(frame, bool) or not isinstance(frame, int) or not 1 <= frame <= frames:
            raise DataError(f"{label} has {frames} frames, so there is no frame {frame}; choose a frame from 1 to {frames}")
        return frame - 1, [f"this DICOM file has {frames} frames; frame {frame} was used, as asked"]
    if frames == 1:
        return 0, []
    index = (frames - 1) // 2
    return index, [f"this DICOM file has {frames} frames; frame {index + 1} (the middle one) was used"]


def _decode(fp: BinaryIO, ds, label: str, index: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    fp.seek(0)
    try:
        with _quiet():
            arr = pixel_array(fp, index=index)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise DataError(
                f"{label} is compressed as {syntax.name}, which this studio cannot decode; "
                "export it uncompressed (Explicit VR Little Endian) from the viewer or PACS"
            ) from exc
        raise DataError(f"{label} has pixel data that could not be read (missing, cut short or inconsistent with its header); export it again") from exc
    if arr.ndim == 4 or (arr.ndim == 3 and _int(ds, "SamplesPerPixel", 1) == 1):
        arr = arr[0]  # a decoder that returned the frame axis anyway
    return arr


def _to_image(arr: np.ndarray, ds, label: str) -> Image.Image:
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    with _quiet():
        if photometric == "PALETTE COLOR":
            try:
                arr = apply_color_lut(arr, ds)
            except Exception as exc:
                raise DataError(f"{label} uses a colour palette that could not be read; export it as RGB or grayscale") from exc
            return Image.fromarray(_colour_to_uint8(arr), "RGB")
        if arr.ndim == 3:  # RGB, or YBR already converted to RGB by pydicom
            return Image.fromarray(_colour_to_uint8(arr[..., :3]), "RGB")
        values = apply_modality_lut(arr, ds).astype(np.float64)
        if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
            out = _voi_lut(values, ds)
        else:
            window = _window(ds)
            out = _apply_window(values, *window) if window else stretch_to_uint8(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return Image.fromarray(np.ascontiguousarray(out), "L")


def _colour_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return stretch_to_uint8(arr)


def _voi_lut(values: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels import apply_voi

    item = ds.VOILUTSequence[0]
    out = apply_voi(values.round().astype(np.int64), ds, index=0).astype(np.float64)
    try:
        bits = int(item.LUTDescriptor[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        bits = 0
    top = float(2**bits - 1) if 8 <= bits <= 16 else float(out.max() or 1)
    return np.rint(np.clip(out / top * 255.0, 0, 255)).astype(np.uint8)


def _window(ds) -> tuple[float, float, str] | None:
    """The file's first window (center, width, function), or None when it has none usable."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if _multi(center) else center)
        w = float(width[0] if _multi(width) else width)
    except (TypeError, ValueError, IndexError):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if not np.isfinite(c) or not np.isfinite(w) or w <= 0 or (function == "LINEAR" and w < 1):
        return None
    return c, w, function


def _multi(value) -> bool:
    return not isinstance(value, (str, bytes)) and hasattr(value, "__len__")


def _apply_window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """Window ``x`` to 0..255 by the DICOM formulas (PS3.3 C.11.2.1.2 and C.11.2.1.3)."""
    if function == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    elif function == "LINEAR_EXACT":
        y = ((x - c) / w + 0.5) * 255.0
    else:  # LINEAR, the default
        y = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
        y = np.where(x <= c - 0.5 - (w - 1.0) / 2.0, 0.0, y)
        y = np.where(x > c - 0.5 + (w - 1.0) / 2.0, 255.0, y)
    return np.rint(np.clip(y, 0, 255)).astype(np.uint8)
