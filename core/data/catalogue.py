"""Which datasets there are, and one entry point that loads any of them by name or path.

A dataset spec is a MedMNIST flag ("bloodmnist"), or the path of an image folder, a
``.zip`` of one, or a person's own ``.npz``. :func:`load_dataset` picks the source;
:func:`count_dataset_images` sizes a spec without decoding an image (the demo's limit on
dataset size is judged from it, see ``check_dataset_size`` in the limits policy).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from core.data.dataset import ImageDataset
from core.data.folder_source import load_image_folder
from core.data.images import IMAGE_EXTENSIONS
from core.data.medmnist_info import is_medmnist, list_medmnist, medmnist_facts
from core.data.medmnist_source import load_medmnist
from core.data.npz_source import is_npz_dataset, read_npz_dataset
from core.errors import DataError


def list_datasets() -> list[str]:
    """The datasets the studio knows by name: the twelve 2D MedMNIST flags."""
    return list_medmnist()


def load_dataset(
    spec: str | os.PathLike,
    size: int = 28,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a dataset by MedMNIST flag or from an image folder or zip.

    Args:
        spec: a MedMNIST flag ("bloodmnist"), the path of a folder or ``.zip`` with one
            sub-folder of images per class, or of a person's own ``.npz`` (a file, or a
            folder made by :func:`core.data.npz_source.import_npz_dataset`).
        size: image side in pixels; for MedMNIST one of 28, 64, 128, 224.
        data_dir: where MedMNIST files live (see :func:`core.paths.data_dir`).
        seed: seed of the stratified split of a folder without train/val/test sub-folders.

    Returns:
        The dataset.
    """
    text = os.fspath(spec).strip() if isinstance(spec, (str, os.PathLike)) else None
    if text is None or not text:
        raise DataError(
            f"{spec!r} is not a dataset; give a MedMNIST name ({', '.join(list_medmnist())}) "
            "or the path of a folder or .zip with one sub-folder of images per class"
        )
    if text.lower() in list_medmnist():
        return load_medmnist(text.lower(), size=size, data_dir=data_dir)
    path = Path(text).expanduser()
    if is_npz_dataset(path) or (path.is_file() and path.suffix.lower() == ".npz"):
        return read_npz_dataset(path, size=size, seed=seed)  # the person's own .npz (see npz_source)
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
        return load_image_folder(path, size=size, seed=seed)
    if path.exists():
        what = "a file that is not a .zip"
    else:
        what = "neither a MedMNIST name nor an existing folder or .zip"
    raise DataError(
        f"{text!r} is {what}; give a MedMNIST name ({', '.join(list_medmnist())}) "
        "or the path of a folder or .zip with one sub-folder of images per class"
    )


def count_dataset_images(spec: str, stop_after: int | None = None) -> int | None:
    """How many images a dataset has, without decoding any.

    Args:
        spec: a MedMNIST name (its official split sizes are summed, whether or not the file
            is on disk), or a folder or ``.zip`` (files with an image extension are counted).
        stop_after: stop counting a folder or zip once this many are found.

    Returns:
        The count (at most ``stop_after``), or None when ``spec`` is neither (loading it
        will say what is wrong).
    """
    text = str(spec).strip()
    if is_medmnist(text):
        return medmnist_facts(text).n_images
    path = Path(text).expanduser()
    count = 0
    if path.is_dir():
        for _, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
            count += sum(1 for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
            if stop_after is not None and count >= stop_after:
                return stop_after
        return count
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
        except (OSError, zipfile.BadZipFile, ValueError):
            return None
        count = sum(1 for n in names if n.lower().endswith(IMAGE_EXTENSIONS))
        return min(count, stop_after) if stop_after is not None else count
    return None
