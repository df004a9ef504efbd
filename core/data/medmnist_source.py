"""The twelve 2D MedMNIST datasets: find, download, import and validate their ``.npz`` files.

What each dataset should hold (task, label names, channels, split sizes, URL and MD5 of each
size) comes from :mod:`core.data.medmnist_info`, the one reader of ``medmnist.INFO``. Files
live in :func:`core.paths.data_dir` under medmnist's own names (``bloodmnist.npz``,
``bloodmnist_64.npz``), so files the medmnist package downloaded are reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from core.atomic import atomic_write, write_bytes
from core.data.dataset import ImageDataset, ImportReport
from core.data.medmnist_info import (MEDMNIST_SIZES, check_flag_size, is_medmnist, list_medmnist, medmnist_facts,
                                     medmnist_filename, medmnist_md5, medmnist_url)
from core.data.npy_cache import images_on_disk, memmap_threshold, npz_headers
from core.errors import DataError
from core.paths import data_dir as resolve_data_dir
from core.vocab import SPLITS

_NAME = re.compile(r"^(?P<flag>[a-z]+mnist(?:3d)?)(?:_(?P<size>\d+))?(?:\s*\(\d+\))?\.npz$")


class NotOfficialNpz(DataError):
    """A ``.npz`` that is not an official MedMNIST file (altered, relabelled or unknown): it
    can still be imported as the person's own dataset (:mod:`core.data.npz_source`)."""


def load_medmnist(
    flag: str,
    size: int = 28,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load a 2D MedMNIST dataset, downloading its file first if it is missing.

    Args:
        flag: one of :func:`list_medmnist`, e.g. "bloodmnist".
        size: 28, 64, 128 or 224.
        data_dir: the folder of ``.npz`` files (see :func:`core.paths.data_dir`).
        download: try the medmnist package's download when the file is missing.

    Returns:
        The dataset with the official train/val/test splits.
    """
    flag, size = check_flag_size(flag, size)
    folder = resolve_data_dir(data_dir)
    file = folder / medmnist_filename(flag, size)
    if not file.is_file():
        if not download:
            raise DataError(_missing(flag, size, folder, "is not in"))
        try:
            _download(flag, size, folder)
        except Exception as exc:  # no network, proxy, disk: the advice is the same
            raise DataError(_missing(flag, size, folder, "could not be downloaded into")) from exc
    return read_medmnist_npz(file, flag, size)


def _missing(flag: str, size: int, folder: Path, what: str) -> str:
    name = medmnist_filename(flag, size)
    return (
        f"{name} {what} {folder}; download it from {medmnist_url(flag, size)} and put it in "
        f"{folder}, or import the file if you already have it"
    )


def _download(flag: str, size: int, folder: Path) -> None:
    import medmnist

    facts = medmnist_facts(flag)
    folder.mkdir(parents=True, exist_ok=True)
    # Download into a scratch folder beside the target and rename when complete (and MD5
    # checked by medmnist), so an interrupted download never leaves a half file behind.
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        dataset_class = getattr(medmnist, facts.python_class)
        smallest = min(SPLITS, key=lambda s: facts.n_samples[s])  # the class loads one split
        dataset_class(split=smallest, download=True, root=str(tmp), size=size)
        os.replace(tmp / medmnist_filename(flag, size), folder / medmnist_filename(flag, size))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_medmnist_npz(path: str | os.PathLike, flag: str, size: int = 28) -> ImageDataset:
    """Read and validate a MedMNIST ``.npz`` file.

    Checks that the file opens without pickle, has ``{train,val,test}_{images,labels}``, that
    images are uint8 (N, H, W) or (N, H, W, 3) at ``size`` px with the channels of ``flag``,
    and that labels are whole numbers in range (0/1 per label for multi-label).

    Args:
        path: the ``.npz`` file.
        flag: the dataset it should hold.
        size: the image side it should have.

    Returns:
        The dataset.
    """
    flag, size = check_flag_size(flag, size)
    facts = medmnist_facts(flag)
    path = Path(path)
    name = path.name
    task = facts.task
    class_names = list(facts.class_names)
    k = len(class_names)
    channels = facts.channels
    report = ImportReport(files_read=[str(path)])
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{name} is not a readable .npz file ({_reason(exc)}); download it again or import the official file") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{name} holds a single array, not the train/val/test arrays of a MedMNIST .npz; use the official file")
    images, labels = {}, {}
    with npz:
        required = [f"{s}_{part}" for s in SPLITS for part in ("images", "labels")]
        missing = [key for key in required if key not in npz.files]
        if missing:
            found = ", ".join(sorted(npz.files)) or "nothing"
            raise DataError(f"{name} lacks {', '.join(missing)} (it has {found}); use the official MedMNIST file")
        disk = _images_on_disk(path, name, f"{flag}_{size}", size, channels, report)
        for split in SPLITS:
            x = disk[f"{split}_images"] if disk is not None else _array(npz, f"{split}_images", name)
            y = _array(npz, f"{split}_labels", name)
            if disk is None:
                _check_images(x, f"{split}_images", name, size, channels)
            y = _check_labels(y, f"{split}_labels", name, x.shape[0], k, task, flag)
            expected = facts.n_samples[split]
            if x.shape[0] != expected:
                report.note(f"{split} has {x.shape[0]} images; the official {flag} has {expected}")
            if disk is not None:
                images[split] = x  # already (N, C, H, W) on disk
            else:
                t = torch.from_numpy(x)
                images[split] = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
            labels[split] = torch.from_numpy(y)
    return ImageDataset(
        name=flag if size == 28 else f"{flag}_{size}",
        source="medmnist",
        images=images,
        labels=labels,
        task=task,
        class_names=class_names,
        report=report,
    )


def _images_on_disk(path: Path, name: str, cache_name: str, size: int, channels: int,
                    report: ImportReport) -> dict | None:
    """The images as :class:`DiskImages` when they are too big for memory, else None.

    Only plain uint8 C-order members qualify; anything else goes through the in-memory path,
    which explains what is wrong with it.
    """
    keys = [f"{split}_images" for split in SPLITS]
    try:
        headers = npz_headers(path)
    except Exception:  # a damaged archive: the in-memory path says so
        return None
    if any(key not in headers or headers[key][1] != np.uint8 or headers[key][2] for key in keys):
        return None
    total = sum(int(np.prod(headers[key][0])) for key in keys)
    if total <= memmap_threshold():
        return None
    for key in keys:  # refuse a wrong shape before spending minutes converting it
        shape = headers[key][0]
        _check_images(np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, (0,) * len(shape)),
                      key, name, size, channels)
    cache_dir = path.parent / ".cache" / cache_name
    disk = images_on_disk(path, keys, cache_dir)
    report.note(f"the images ({total / 1024**3:.1f} GB) are read from disk a batch at a time, "
                f"from a copy made once in {cache_dir}")
    return disk


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:120]


def _array(npz, key: str, name: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{name}: {key} holds Python objects, which are never loaded for safety; use the official MedMNIST file") from exc
        raise DataError(f"{name}: {key} could not be read ({_reason(exc)}); download the file again") from exc
    except Exception as exc:  # a damaged member of the zip archive
        raise DataError(f"{name}: {key} could not be read ({_reason(exc)}); download the file again") from exc


def _check_images(x: np.ndarray, key: str, name: str, size: int, channels: int) -> None:
    if x.dtype != np.uint8:
        raise DataError(f"{name}: {key} has type {x.dtype}, expected uint8 pixels (0-255); use the official MedMNIST file")
    want = (size, size) if channels == 1 else (size, size, 3)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        shape = ", ".join(["N", *map(str, want)])
        raise DataError(
            f"{name}: {key} has shape {tuple(x.shape)}, expected ({shape}) for {channels}-channel {size} px images; "
            "use the official MedMNIST file of that size"
        )


def _check_labels(y: np.ndarray, key: str, name: str, n: int, k: int, task: str, flag: str) -> np.ndarray:
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DataError(f"{name}: {key} has type {y.dtype}, expected whole-number class labels; use the official MedMNIST file")
    if task == "multi-label":
        if y.shape != (n, k):
            raise DataError(f"{name}: {key} has shape {tuple(y.shape)}, expected ({n}, {k}): one 0/1 per label; use the official MedMNIST file")
        if y.size and (y.min() < 0 or y.max() > 1):
            raise DataError(f"{name}: {key} has values from {y.min()} to {y.max()}, expected only 0 and 1; use the official MedMNIST file")
        return y.astype(np.float32)
    if y.shape not in ((n,), (n, 1)):
        raise DataError(f"{name}: {key} has shape {tuple(y.shape)}, expected ({n}, 1): one label per image; use the official MedMNIST file")
    y = y.reshape(n).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise DataError(
            f"{name}: {key} has labels from {y.min()} to {y.max()}, but {flag} has {k} classes (0 to {k - 1}); "
            "use the official MedMNIST file"
        )
    return y


def import_npz(src: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Import a user's copy of an official MedMNIST ``.npz`` into the data folder.

    The dataset and size come from the file name (``bloodmnist_64.npz``; a browser's
    `` (1)`` is tolerated) or, when the name says nothing, from the MD5. The MD5 must match
    ``medmnist.INFO``; the file is then copied atomically under its canonical name.

    Args:
        src: path of the ``.npz``.
        data_dir: destination folder (see :func:`core.paths.data_dir`).

    Returns:
        The path of the imported file.
    """
    src = Path(src).expanduser()
    if not src.is_file():
        raise DataError(f"{src} is not a file; give the path of a MedMNIST .npz file")
    with open(src, "rb") as fh:
        digest = _md5(fh)
    flag, size = _identify(src.name, digest)
    dest = resolve_data_dir(data_dir) / medmnist_filename(flag, size)
    if dest.exists() and os.path.samefile(src, dest):
        return dest
    with open(src, "rb") as fh:
        return atomic_write(dest, lambda out: shutil.copyfileobj(fh, out, 1024**2))


def import_npz_bytes(data: bytes, filename: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Like :func:`import_npz` for an upload: the file's bytes and its original name.

    Returns:
        The path of the imported file.
    """
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    flag, size = _identify(Path(filename).name, digest)
    return write_bytes(resolve_data_dir(data_dir) / medmnist_filename(flag, size), data)


def _md5(fh: BinaryIO) -> str:
    h = hashlib.md5(usedforsecurity=False)
    while chunk := fh.read(1024**2):
        h.update(chunk)
    return h.hexdigest()


def _identify(filename: str, digest: str) -> tuple[str, int]:
    official = {medmnist_md5(f, s): (f, s) for f in list_medmnist() for s in MEDMNIST_SIZES}
    m = _NAME.match(filename.strip().lower())
    if m and m.group("flag").endswith("3d"):
        raise DataError(f"{filename} is a 3D MedMNIST dataset, which the studio does not use; import one of {', '.join(list_medmnist())}")
    if m and is_medmnist(m.group("flag")):
        flag, size = check_flag_size(m.group("flag"), int(m.group("size") or 28))
        expected = medmnist_md5(flag, size)
        if digest == expected:
            return flag, size
        if digest in official:
            actual = medmnist_filename(*official[digest])
            raise DataError(f"{filename} is named like {medmnist_filename(flag, size)} but holds the official {actual}; rename it to {actual} and import it again")
        raise NotOfficialNpz(
            f"{filename} does not match the official {medmnist_filename(flag, size)} (MD5 {digest}, expected {expected}); "
            f"it is damaged or altered, so download it again from {medmnist_url(flag, size)}"
        )
    if digest in official:
        return official[digest]
    raise NotOfficialNpz(
        f"cannot tell which MedMNIST file {filename} is; name it like bloodmnist.npz (28 px) or "
        "bloodmnist_64.npz and import it again"
    )
