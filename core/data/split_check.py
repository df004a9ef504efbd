"""Refuse an image folder too small to split, before any training starts.

A stratified split (:func:`core.data.folder_source.stratified_split`) gives every class its
share of train, validation and test by largest remainders; with too few images a class gets
nothing in validation or test, and training then fails at the end (an empty test split, a
metric over no samples). The smallest count that works follows from the same arithmetic, so
the message can say exactly how many images to add.

Two callers: the folder importer, on the images it decoded (:func:`check_split_counts`), and
the trainer's config check, which counts files without decoding any
(:func:`check_folder_splittable`), so the Train page and ``python -m core train`` refuse
before a run is queued.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from core.errors import DataError

DEFAULT_SPLIT = (0.7, 0.15, 0.15)
_SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}
_SEARCH_LIMIT = 100_000  # no sane fraction needs more images per class than this


def largest_remainder(n: int, fractions: tuple[float, ...]) -> list[int]:
    """How many of ``n`` items each part gets: floors first, then the largest remainders.

    Args:
        n: the number of items (the images of one class).
        fractions: one fraction per part, summing to 1.

    Returns:
        One count per part, summing to ``n``; the first part never gets 0 when ``n`` > 0.
    """
    exact = [n * f for f in fractions]
    counts = [int(np.floor(e)) for e in exact]
    order = sorted(range(len(exact)), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    if n and counts[0] == 0:  # a class never vanishes from the training part
        donor = max(range(1, len(counts)), key=lambda k: counts[k])
        counts[donor] -= 1
        counts[0] += 1
    return counts


@lru_cache(maxsize=64)
def min_per_class(fractions: tuple[float, ...]) -> int:
    """The fewest images a class needs so every part with a fraction above 0 gets one.

    Not simply ``ceil(1 / min fraction)``: largest remainders give a part its image earlier
    (5 images split 70/15/15 give 3/1/1), and one more image can take it away again, so this
    is the smallest ``n`` from which every larger count works as well.

    Args:
        fractions: the split fractions, summing to 1.

    Returns:
        That count.
    """
    positive = [f for f in fractions if f > 0]
    # From ceil(1 / smallest fraction) on, every part's floor is already at least 1.
    upper = math.ceil(1 / min(positive) - 1e-9)
    if upper > _SEARCH_LIMIT:
        raise DataError(f"split fractions {fractions} give a part almost nothing; use fractions such as 0.7, 0.15, 0.15")
    for n in range(upper - 1, 0, -1):
        counts = largest_remainder(n, fractions)
        if any(c < 1 for c, f in zip(counts, fractions) if f > 0):
            return n + 1
    return 1


def check_split_counts(
    counts: Mapping[str | None, Mapping[str, int]],
    fractions: tuple[float, float, float] = DEFAULT_SPLIT,
    label: str = "the dataset",
) -> None:
    """Refuse a dataset whose classes cannot fill train, validation and test.

    Args:
        counts: images per class, by split folder: ``{None: {class: n}}`` for a folder without
            split folders, else ``{"train": {...}, "val": {...}, "test": {...}}`` with the
            split folders present (a missing val or test is carved from train).
        fractions: train/val/test fractions of a folder without split folders (a zero
            fraction asks for that split to be empty, and is honoured).
        label: the dataset's name, for messages.

    Raises:
        DataError: naming the first short class, what it has, the smallest count that works,
            and how many to add.
    """
    if None in counts:
        _check_carved(counts[None], fractions, ("train", "val", "test"), label, where="")
        return
    missing = tuple(s for s in ("val", "test") if s not in counts)
    for split in ("val", "test"):
        if split in counts and sum(counts[split].values()) == 0:
            raise DataError(
                f"the {split}/ folder of {label} has no images, so there is nothing to "
                f"{'validate' if split == 'val' else 'test'} on; add at least one image of every class to it "
                "(or remove the folder to carve it from train/)"
            )
    classes = sorted({c for per in counts.values() for c in per})
    for c in classes:
        if counts["train"].get(c, 0) == 0:
            raise DataError(f"class '{c}' has no images in the train/ folder of {label}, so it cannot be learned; "
                            "add at least one of its images to train/")
    if missing:
        names = ("train",) + missing
        wanted = [fractions[0]] + [fractions[("train", "val", "test").index(s)] for s in missing]
        carve = tuple(w / sum(wanted) for w in wanted)
        _check_carved(counts["train"], carve, names, label, where=" in train/")


def _check_carved(per_class: Mapping[str, int], fractions: tuple[float, ...], names: tuple[str, ...],
                  label: str, where: str) -> None:
    need = min_per_class(fractions)
    short = sorted((n, c) for c, n in per_class.items() if n < need)
    if not short:
        return
    have, name = short[0]
    parts = [_SPLIT_WORDS[s] for s, f in zip(names, fractions) if f > 0]
    gets = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    others = ""
    if len(short) > 1:
        missing = sum(need - n for n, _ in short)
        others = f" ({len(short)} of {len(per_class)} classes are short; {missing} more images in all)"
    raise DataError(
        f"class '{name}' has {have} image{'s' if have != 1 else ''}{where}; each class needs at least {need} "
        f"so that {gets} each get one: add {need - have} more{others}"
    )


def count_folder_images(path: str | os.PathLike) -> tuple[dict[str | None, dict[str, int]], str] | None:
    """Images per class per split folder of an image folder, counted by file, none decoded.

    Args:
        path: a folder with class sub-folders (with or without train/val/test folders).

    Returns:
        ``(counts, label)`` in the form :func:`check_split_counts` takes, or None when
        ``path`` is not a folder or its layout is not one the importer accepts (loading it
        says what is wrong).
    """
    from core.data.folder_layout import files_below, is_image_name, layout_of, subdirs, unwrap

    path = Path(path).expanduser()
    if not path.is_dir():
        return None
    try:
        root = unwrap(path)
        layout = layout_of(root, path.name)
        counts: dict[str | None, dict[str, int]] = {}
        for split, split_dir in layout.items():
            per = counts.setdefault(split, {})
            for class_dir in subdirs(split_dir):
                n = sum(1 for f in files_below(class_dir) if f.is_file() and is_image_name(f))
                if n:
                    per[class_dir.name] = n
    except (OSError, DataError):
        return None
    return counts, path.name


def check_folder_splittable(spec: str, fractions: tuple[float, float, float] = DEFAULT_SPLIT) -> None:
    """Refuse, before training, an image folder that is too small to split.

    A MedMNIST name, a ``.zip`` or a path that is not a folder passes here (the official
    splits are fixed; a zip is checked when it is loaded, which ``python -m core train`` does
    before it makes a run). Unreadable files are counted as images here, so loading can
    still refuse a folder this lets through.

    Args:
        spec: the dataset as the run's settings name it.
        fractions: the train/val/test fractions the importer will use.

    Raises:
        DataError: see :func:`check_split_counts`.
    """
    found = count_folder_images(str(spec).strip())
    if found is None:
        return
    counts, label = found
    classes = {c for per in counts.values() for c in per}
    if len(classes) < 2:
        return  # loading gives the better message ("found only one class ...")
    check_split_counts(counts, fractions, label)
