"""What is known about the twelve 2D MedMNIST datasets, read from ``medmnist.INFO``.

The one module that reads ``medmnist.INFO`` (the medmnist package's table of task, label
names, channels, split sizes, and the download URL and MD5 of each size: keys ``url`` /
``MD5`` for 28 px, ``url_64`` / ``MD5_64`` and so on). Everything else asks here: the
source that reads the files (:mod:`core.data.medmnist_source`), the catalogue
(:mod:`core.data.catalogue`), the pages and the command line.

Files live in :func:`core.paths.data_dir` under medmnist's own names (``bloodmnist.npz``,
``bloodmnist_64.npz``), so files the medmnist package downloaded are reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

import numpy as np

from core.errors import DataError
from core.paths import data_dir as resolve_data_dir
from core.vocab import IMAGE_SIZES, MEDMNIST_TASKS, SPLITS

MEDMNIST_SIZES = IMAGE_SIZES  # MedMNIST ships every size the studio offers

_FLAGS_2D = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
)


@dataclass(frozen=True)
class MedmnistFacts:
    """One MedMNIST dataset as ``medmnist.INFO`` describes it.

    Attributes:
        flag: its name, e.g. "bloodmnist".
        about: the first sentence of medmnist's description.
        task: our task name ("binary", "multi-class", "multi-label", "ordinal").
        medmnist_task: medmnist's own name for it ("multi-label, binary-class").
        class_names: one name per class (per label for multi-label), in index order.
        channels: 1 (grayscale) or 3 (RGB).
        n_samples: split -> number of images of the official split.
        python_class: the medmnist class that downloads it ("BloodMNIST").
    """

    flag: str
    about: str
    task: str
    medmnist_task: str
    class_names: tuple[str, ...]
    channels: int
    n_samples: Mapping[str, int]
    python_class: str

    @property
    def num_classes(self) -> int:
        """Number of classes (of labels, for multi-label)."""
        return len(self.class_names)

    @property
    def n_images(self) -> int:
        """Images of all official splits together."""
        return int(sum(self.n_samples.values()))


def list_medmnist() -> list[str]:
    """The twelve 2D MedMNIST flags, in medmnist's order."""
    return list(_FLAGS_2D)


def is_medmnist(name: object) -> bool:
    """Whether ``name`` is one of the twelve flags (any case, surrounding spaces ignored)."""
    return isinstance(name, str) and name.strip().lower() in _FLAGS_2D


def _info(flag: str) -> dict:
    # Imported here: the medmnist package pulls in scikit-learn and takes a second or two.
    from medmnist import INFO

    return INFO[flag]


def check_flag_size(flag: str, size: int) -> tuple[str, int]:
    """``(flag, size)`` normalised, or a :class:`DataError` that lists the valid ones."""
    key = str(flag).strip().lower()
    if key not in _FLAGS_2D:
        raise DataError(f"unknown MedMNIST dataset {flag!r}; choose one of {', '.join(_FLAGS_2D)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) not in MEDMNIST_SIZES:
        raise DataError(f"MedMNIST has no {size!r} px version; choose a size of {', '.join(map(str, MEDMNIST_SIZES))}")
    return key, int(size)


@lru_cache(maxsize=None)
def medmnist_facts(flag: str) -> MedmnistFacts:
    """The facts of one dataset (without reading its file).

    Args:
        flag: one of :func:`list_medmnist` (any case).

    Returns:
        Its :class:`MedmnistFacts`.

    Raises:
        DataError: ``flag`` is not one of the twelve.
    """
    key, _ = check_flag_size(flag, MEDMNIST_SIZES[0])
    info = _info(key)
    labels = info["label"]
    return MedmnistFacts(
        flag=key,
        about=info["description"].split(". ")[0] + ".",
        task=MEDMNIST_TASKS[info["task"]],
        medmnist_task=info["task"],
        class_names=tuple(labels[k] for k in sorted(labels, key=int)),
        channels=int(info["n_channels"]),
        n_samples=MappingProxyType({s: int(info["n_samples"][s]) for s in SPLITS}),
        python_class=info["python_class"],
    )


def _suffix(size: int) -> str:
    return "" if size == 28 else f"_{size}"


def medmnist_filename(flag: str, size: int = 28) -> str:
    """medmnist's file name: ``bloodmnist.npz`` for 28 px, ``bloodmnist_64.npz`` otherwise."""
    flag, size = check_flag_size(flag, size)
    return f"{flag}{_suffix(size)}.npz"


def medmnist_url(flag: str, size: int = 28) -> str:
    """The official download URL of one file, from ``medmnist.INFO``."""
    flag, size = check_flag_size(flag, size)
    return _info(flag)[f"url{_suffix(size)}"]


def medmnist_md5(flag: str, size: int = 28) -> str:
    """The official MD5 of one file, from ``medmnist.INFO``."""
    flag, size = check_flag_size(flag, size)
    return _info(flag)[f"MD5{_suffix(size)}"]


def medmnist_on_disk(data_dir: str | os.PathLike | None = None) -> dict[str, list[int]]:
    """Which MedMNIST files are in the data folder.

    Args:
        data_dir: the folder of ``.npz`` files (see :func:`core.paths.data_dir`).

    Returns:
        flag -> the image sizes whose ``.npz`` is there, in medmnist's order of flags; a flag
        with no file is left out.
    """
    root = resolve_data_dir(data_dir)
    found = {}
    for flag in _FLAGS_2D:
        sizes = [s for s in MEDMNIST_SIZES if (root / medmnist_filename(flag, s)).is_file()]
        if sizes:
            found[flag] = sizes
    return found
