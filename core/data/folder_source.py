"""Datasets from a folder (or a .zip of one) with one sub-folder of images per class.

Accepted layouts::

    my_data/normal/*.png            my_data/train/normal/*.png
    my_data/tumour/*.png            my_data/train/tumour/*.png
                                    my_data/val/...   (optional)
                                    my_data/test/...  (optional)

A single wrapping folder (what zipping a folder usually produces) is looked through. Images
may sit in nested folders below their class folder. Files that cannot be used are skipped and
listed in the import report; the import only fails when no usable dataset is left.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.data.dataset import SPLITS, ImageDataset, ImportReport
from core.data.folder_layout import files_below, is_image_name, layout_of, natural_key, subdirs, unwrap, visible
from core.data.images import MAX_PIXELS, image_to_tensor, read_image
from core.data.safe_zip import extract_zip
from core.data.split_check import check_split_counts, largest_remainder
from core.errors import ConfigError, DataError



def load_image_folder(
    path: str | os.PathLike,
    size: int = 28,
    channels: int | None = None,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    *,
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> ImageDataset:
    """Load a folder or ``.zip`` of class sub-folders as an :class:`ImageDataset`.

    Args:
        path: a directory, or a ``.zip`` (extracted with :mod:`core.data.safe_zip` into a
            temporary folder that is removed afterwards).
        size: every image is resized to ``size`` x ``size``.
        channels: 1 or 3; None picks 1 when every image is grayscale (an RGB file whose three
            bands are equal counts as grayscale), else 3.
        split: train/val/test fractions for a stratified, seeded split when the folder has no
            ``train/`` sub-folder (normalised to sum 1). With ``train/`` present, its sibling
            ``val/`` and ``test/`` are used, and a missing one is carved from train, stratified,
            in the same proportions.
        seed: seed of the split.
        max_pixels: largest image accepted (see :func:`core.data.images.decode_image`).
        progress: called as ``progress(done, total)`` after each file is decoded.

    Returns:
        The dataset; ``report`` lists every skipped file with its reason.
    """
    fractions = _check_split(split)
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (grayscale), 3 (RGB) or None (decide from the images), not {channels!r}")
    if not isinstance(size, int) or not 1 <= size <= 1024:
        raise ConfigError(f"image size must be a whole number of pixels between 1 and 1024, not {size!r}")
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            return _load_tree(path, path.name, size, channels, fractions, seed, max_pixels, progress)
        if path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
            with tempfile.TemporaryDirectory(prefix="studio-zip-") as tmp:
                extract_zip(path, tmp)
                return _load_tree(Path(tmp), path.stem, size, channels, fractions, seed, max_pixels, progress)
    except OSError as exc:  # a folder that cannot be listed; single files are skipped instead
        raise DataError(f"{path.name} could not be read ({exc.strerror or exc}); check that the folder is readable") from exc
    if path.exists():
        raise DataError(f"{path} is neither a folder nor a .zip; give a folder (or .zip) with one sub-folder of images per class")
    raise DataError(f"{path} does not exist; give a folder (or .zip) with one sub-folder of images per class")


def _check_split(split) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values) or values[0] <= 0:
        raise ConfigError(f"split must be three non-negative fractions (train, val, test) with train above 0, not {split!r}")
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def _load_tree(root, label, size, channels, fractions, seed, max_pixels, progress) -> ImageDataset:
    report = ImportReport()
    base = root
    root = unwrap(root)
    layout = layout_of(root, label)

    # (split or None, class name, file) for every candidate image.
    candidates: list[tuple[str | None, str, Path]] = []
    folders: set[str] = set()
    if None not in layout:
        for f in visible(root.iterdir()):
            if f.is_file():
                report.skip(_rel(f, base), "not inside a split and class folder")
    for split_name, split_dir in layout.items():
        for f in visible(split_dir.iterdir()):
            if f.is_file():
                report.skip(_rel(f, base), "not inside a class folder")
        for class_dir in subdirs(split_dir):
            folders.add(class_dir.name)
            for f in files_below(class_dir):
                if not f.is_file():
                    report.skip(_rel(f, base), "not a regular file (a broken link?)")
                elif not is_image_name(f):
                    report.skip(_rel(f, base), f"not an image file (extension {f.suffix or 'none'}); use PNG, JPEG, BMP, TIFF or DICOM")
                else:
                    candidates.append((split_name, class_dir.name, f))
    if not folders:
        raise DataError(
            f"{label} has no class folders; put the images of each class in its own sub-folder, "
            f"e.g. {label}/normal/ and {label}/abnormal/"
        )

    decoded: list[tuple[str | None, str, torch.Tensor]] = []
    frame_notes: list[tuple[str, str]] = []  # (file, which frame or page was used)
    for done, (split_name, class_name, f) in enumerate(candidates, start=1):
        rel = _rel(f, base)
        try:
            result = read_image(f, max_pixels=max_pixels, name=rel)
        except DataError as exc:
            report.skip(rel, str(exc))
        else:
            decoded.append((split_name, class_name, _to_tensor(result.image, size, channels)))
            report.files_read.append(rel)
            frame_notes += [(rel, n) for n in result.notes]
        if progress is not None:
            progress(done, len(candidates))

    with_images = {c for _, c, _ in decoded}
    for name in sorted(folders - with_images, key=natural_key):
        had_files = any(c == name for _, c, _ in candidates)
        why = "has no readable images" if had_files else "is empty"
        report.note(f"class folder '{name}' {why} and was skipped")
    class_names = sorted(with_images, key=natural_key)
    if not class_names:
        skipped = report.files_skipped
        seen = f" ({len(skipped)} file(s) skipped, e.g. {skipped[0][0]})" if skipped else ""
        raise DataError(f"no class folder of {label} holds a readable image{seen}; add PNG, JPEG, BMP or TIFF images")
    if len(class_names) == 1:
        raise DataError(f"found only one class '{class_names[0]}'; a classifier needs at least two sub-folders of images")
    counts: dict[str | None, dict[str, int]] = {s: {} for s in layout}
    for split_name, class_name, _ in decoded:
        counts[split_name][class_name] = counts[split_name].get(class_name, 0) + 1
    check_split_counts(counts, fractions, label)  # before a split comes out empty
    if frame_notes:
        rel, text = frame_notes[0]
        report.note(f"{len(frame_notes)} file(s) have several frames or pages and one was used from each, e.g. {rel}: {text}")

    if channels is None:
        channels = 1 if all(t.shape[0] == 1 for _, _, t in decoded) else 3
        report.note(f"images are {'grayscale' if channels == 1 else 'colour'}, so the dataset has {channels} channel(s)")
    tensors = [t.expand(channels, -1, -1) if t.shape[0] != channels else t for _, _, t in decoded]
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[c] for _, c, _ in decoded], dtype=np.int64)
    where = np.array([s or "" for s, _, _ in decoded])

    parts = _assign_splits(labels, where, layout, fractions, seed, report)
    images, targets = {}, {}
    for split_name in SPLITS:
        idx = parts[split_name]
        if len(idx):
            images[split_name] = torch.stack([tensors[i] for i in idx]).contiguous()
        else:
            images[split_name] = torch.empty((0, channels, size, size), dtype=torch.uint8)
            report.note(f"the {split_name} split is empty; add more images per class")
        targets[split_name] = torch.from_numpy(labels[idx].copy())
    return ImageDataset(
        name=label,
        source="folder",
        images=images,
        labels=targets,
        task="binary" if len(class_names) == 2 else "multi-class",
        class_names=class_names,
        report=report,
    )


def _to_tensor(img, size: int, channels: int | None) -> torch.Tensor:
    if channels is not None:
        return image_to_tensor(img, size, channels)
    t = image_to_tensor(img, size, 1 if img.mode == "L" else 3)
    # Equal bands stay equal under resizing, so checking after it is exact and cheaper.
    if t.shape[0] == 3 and torch.equal(t[0], t[1]) and torch.equal(t[1], t[2]):
        return t[:1].contiguous()
    return t


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _assign_splits(labels, where, layout, fractions, seed, report) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pct = "/".join(f"{round(f * 100)}" for f in fractions)
    if None in layout:
        train, val, test = stratified_split(labels, fractions, rng)
        report.note(f"split {pct} (train/val/test) stratified by class with seed {seed}")
        return {"train": train, "val": val, "test": test}
    parts = {s: np.flatnonzero(where == s) for s in SPLITS}
    missing = [s for s in ("val", "test") if s not in layout]
    if missing:
        wanted = [fractions[0]] + [fractions[SPLITS.index(s)] for s in missing]
        pieces = stratified_split(labels[parts["train"]], tuple(w / sum(wanted) for w in wanted), rng)
        kept = parts["train"]
        parts["train"] = kept[pieces[0]]
        for s, piece in zip(missing, pieces[1:]):
            parts[s] = kept[piece]
        report.note(f"used the split folders; {' and '.join(missing)} carved from train, stratified, with seed {seed}")
    else:
        report.note("used the train/val/test folders as the splits")
    return parts


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Split indices so every class is spread over the parts in the given proportions.

    Args:
        labels: class index per sample.
        fractions: one fraction per part, summing to 1; the first part gets at least one
            sample of every class present.
        rng: the random generator (seeded by the caller).

    Returns:
        One sorted index array per part.
    """
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        counts = _largest_remainder(len(idx), fractions)
        start = 0
        for k, n in enumerate(counts):
            parts[k].append(idx[start : start + n])
            start += n
    return [np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for p in parts]


def _largest_remainder(n: int, fractions: tuple[float, ...]) -> list[int]:
    # One implementation, so the size check in core.data.split_check cannot drift from it.
    return largest_remainder(n, fractions)
