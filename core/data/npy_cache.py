"""Converting the images of a big ``.npz`` once into ``.npy`` files read from disk.

``np.load`` on an ``.npz`` member reads the whole array into memory (PathMNIST at 224 px is
about 16 GB), so a file above :func:`memmap_threshold` is converted instead: each images
member is streamed out of the zip in chunks, turned from (N, H, W[, C]) into (N, C, H, W),
and written to ``<folder>/.cache/<name>/<member>.npy``. A ``source.json`` written last
records the ``.npz``'s size and modification time; the next load reuses the copy while they
match and converts again when the ``.npz`` changed. Each ``.npy`` is written under a
temporary name and renamed when complete, so a killed conversion leaves nothing that is
mistaken for a finished copy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from core.atomic import atomic_write, write_json
from core.data.ondisk import DiskImages, read_npy_header
from core.errors import DataError

logger = logging.getLogger(__name__)

THRESHOLD_ENV = "STUDIO_MEMMAP_ABOVE_MB"
DEFAULT_THRESHOLD_MB = 2048  # images above this many MB (uint8) are read from disk
CACHE_FORMAT = 1
_CHUNK_BYTES = 64 * 1024**2  # per read from the zip: bounds the conversion's own memory


def memmap_threshold() -> int:
    """Bytes of images above which a dataset is read from disk (``$STUDIO_MEMMAP_ABOVE_MB``)."""
    text = os.environ.get(THRESHOLD_ENV, "").strip()
    try:
        mb = float(text) if text else DEFAULT_THRESHOLD_MB
    except ValueError as exc:
        raise DataError(f"{THRESHOLD_ENV}={text!r} is not a number of megabytes; set it to e.g. 2048") from exc
    return int(mb * 1024**2)


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype, bool]]:
    """Shape, dtype and Fortran order of every array in an ``.npz``, without reading the data.

    Args:
        path: the ``.npz`` file.

    Returns:
        member name without ``.npy`` -> ``(shape, dtype, fortran_order)``.
    """
    out = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.endswith(".npy"):
                with zf.open(name) as fh:
                    shape, dtype, fortran, _ = read_npy_header(fh)
                out[name[:-4]] = (shape, dtype, fortran)
    return out


def images_on_disk(npz_path: str | os.PathLike, keys: list[str], cache_dir: str | os.PathLike) -> dict[str, DiskImages]:
    """The images members ``keys`` of ``npz_path`` as (N, C, H, W) ``.npy`` files in ``cache_dir``.

    Converts them when there is no complete copy made from this very ``.npz`` (same size
    and modification time); otherwise reuses the copy. Two processes loading at once
    convert once: the second waits for the first.

    Args:
        npz_path: the ``.npz`` (its members are uint8 (N, H, W) or (N, H, W, C), C order).
        keys: the member names, e.g. ``["train_images", "val_images", "test_images"]``.
        cache_dir: where the ``.npy`` files go.

    Returns:
        key -> :class:`DiskImages`.
    """
    npz_path, cache_dir = Path(npz_path), Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _locked(cache_dir / ".lock"):
            source = _source_stamp(npz_path)
            found = _reuse(cache_dir, keys, source)
            if found is not None:
                return found
            for stale in cache_dir.glob(".*.tmp"):  # left by a killed conversion; we hold the lock
                stale.unlink(missing_ok=True)
            shapes = {key: _convert(npz_path, key, cache_dir / f"{key}.npy") for key in keys}
            write_json(cache_dir / "source.json", {"format": CACHE_FORMAT, "source": source, "arrays": shapes})
            return {key: DiskImages(cache_dir / f"{key}.npy") for key in keys}
    except OSError as exc:
        raise DataError(
            f"could not write the on-disk copy of {npz_path.name} into {cache_dir} ({exc.strerror or exc}); "
            f"free disk space or make the folder writable, or set {THRESHOLD_ENV} above the dataset's size to load it into memory"
        ) from exc


def _source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _reuse(cache_dir: Path, keys: list[str], source: dict) -> dict[str, DiskImages] | None:
    try:
        record = json.loads((cache_dir / "source.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or record.get("source") != source:
        return None
    arrays = record.get("arrays") or {}
    out = {}
    for key in keys:
        try:
            images = DiskImages(cache_dir / f"{key}.npy")
        except (OSError, ValueError, DataError):
            return None
        if list(images.shape) != arrays.get(key):
            return None
        out[key] = images
    return out


def _convert(npz_path: Path, key: str, dest: Path) -> list[int]:
    with zipfile.ZipFile(npz_path) as zf, zf.open(f"{key}.npy") as src:
        shape, dtype, fortran, _ = read_npy_header(src)
        if dtype != np.uint8 or fortran or len(shape) not in (3, 4):
            raise DataError(f"{npz_path.name}: {key} is {dtype} {shape}, not uint8 (N, H, W[, C]) images in C order")
        n, hwc = shape[0], shape[1:] if len(shape) == 4 else (*shape[1:], 1)
        out_shape = [n, hwc[2], hwc[0], hwc[1]]
        row = int(np.prod(hwc))
        rows_per_chunk = max(1, _CHUNK_BYTES // max(1, row))
        logger.info("converting %s %s (%.1f GB) into %s", npz_path.name, key, n * row / 1e9, dest)

        def write(out) -> None:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                      "shape": tuple(out_shape)}
            np.lib.format.write_array_header_1_0(out, header)
            done, next_log = 0, 0.1
            while done < n:
                k = min(rows_per_chunk, n - done)
                chunk = np.frombuffer(_read_exact(src, k * row, npz_path, key), dtype=np.uint8).reshape(k, *hwc)
                out.write(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2)).data)
                done += k
                if done / n >= next_log:
                    logger.info("%s %s: %d%%", npz_path.name, key, 100 * done // n)
                    next_log += 0.1

        atomic_write(dest, write)
    return out_shape


def _read_exact(fh, nbytes: int, npz_path: Path, key: str) -> bytearray:
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            raise DataError(f"{npz_path.name}: {key} ends early (the file is cut short); download it again")
        got += n
    return buf


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a rare double conversion is only wasted work
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
