"""The types every source produces: :class:`ImageDataset` and its :class:`ImportReport`.

The sources (:mod:`~core.data.medmnist_source`, :mod:`~core.data.folder_source`,
:mod:`~core.data.npz_source`) import this module; it imports none of them. Picking a source
by name is :func:`core.data.catalogue.load_dataset`.

An :class:`ImageDataset` holds whole splits in memory as uint8 tensors: MedMNIST-sized data
fits, and a training loop that slices one tensor is several times faster than a per-sample
PIL pipeline (see ``shared/docs/benchmarks.md``). Splits too big for memory (MedMNIST+ at
224 px) are :class:`core.data.ondisk.DiskImages` instead, which index like those tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from core.data.ondisk import DiskImages
from core.errors import DataError
from core.vocab import SPLITS, TASKS  # noqa: F401 - re-exported for the sources

SOURCES = ("medmnist", "folder", "npz")


@dataclass
class ImportReport:
    """What an import read, what it skipped and why, and anything else worth telling.

    Attributes:
        files_read: the files the images came from (relative to the imported folder, or the
            ``.npz`` path).
        files_skipped: ``(file, reason)`` pairs, one per file that was not used.
        notes: sentences for the person, e.g. "class folder 'x' is empty and was skipped".
    """

    files_read: list[str] = field(default_factory=list)
    files_skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, file: str, reason: str) -> None:
        """Record a file that was not used."""
        self.files_skipped.append((file, reason))

    def note(self, text: str) -> None:
        """Record a sentence for the person."""
        self.notes.append(text)

    def skipped_frame(self) -> pd.DataFrame:
        """The skipped files as a table with columns ``file`` and ``reason``."""
        return pd.DataFrame(self.files_skipped, columns=["file", "reason"])

    def __str__(self) -> str:
        lines = [f"{len(self.files_read)} file(s) read, {len(self.files_skipped)} skipped"]
        lines += [f"skipped {f}: {r}" for f, r in self.files_skipped[:20]]
        if len(self.files_skipped) > 20:
            lines.append(f"... and {len(self.files_skipped) - 20} more skipped")
        lines += self.notes
        return "\n".join(lines)


@dataclass(eq=False)  # tensors have no single truth value; compare datasets by identity
class ImageDataset:
    """Images and labels of the train, val and test splits.

    Attributes:
        name: what the person calls it ("bloodmnist", the folder's name).
        source: "medmnist" or "folder".
        images: split -> uint8 tensor (N, C, H, W), or a :class:`~core.data.ondisk.DiskImages`
            of that shape for a dataset read from disk (indexing it gives such a tensor).
        labels: split -> int64 (N,) class indices for binary, multi-class and ordinal tasks;
            float32 (N, K) of 0/1 for multi-label.
        task: "binary", "multi-class", "multi-label" or "ordinal".
        class_names: one name per class (per label for multi-label), in index order.
        report: what the import read and skipped.
    """

    name: str
    source: str
    images: dict[str, torch.Tensor | DiskImages] = field(repr=False)
    labels: dict[str, torch.Tensor] = field(repr=False)
    task: str
    class_names: list[str]
    report: ImportReport = field(default_factory=ImportReport, repr=False)

    def __post_init__(self) -> None:
        # Every source goes through here, so a malformed dataset fails where it is built
        # rather than deep inside a training step.
        if self.task not in TASKS:
            raise DataError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        if self.source not in SOURCES:
            raise DataError(f"unknown source {self.source!r}; use one of {', '.join(SOURCES)}")
        if set(self.images) != set(self.labels) or "train" not in self.images:
            raise DataError(
                f"dataset {self.name!r} has image splits {sorted(self.images)} and label splits "
                f"{sorted(self.labels)}; both need the same splits, including 'train'"
            )
        shape = None
        for split, x in self.images.items():
            y = self.labels[split]
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise DataError(f"{split} images of {self.name!r} must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if shape is not None and x.shape[1:] != shape:
                raise DataError(f"{split} images of {self.name!r} are {tuple(x.shape[1:])} but train images are {tuple(shape)}")
            shape = x.shape[1:]
            if y.shape[0] != x.shape[0]:
                raise DataError(f"{split} of {self.name!r} has {x.shape[0]} images but {y.shape[0]} labels")
            if self.task == "multi-label":
                if y.dtype != torch.float32 or y.ndim != 2 or y.shape[1] != len(self.class_names):
                    raise DataError(f"multi-label {split} labels of {self.name!r} must be float32 (N, {len(self.class_names)})")
            elif y.dtype != torch.int64 or y.ndim != 1:
                raise DataError(f"{split} labels of {self.name!r} must be int64 (N,), got {y.dtype} {tuple(y.shape)}")

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB)."""
        return int(self.images["train"].shape[1])

    @property
    def image_size(self) -> int:
        """Side of the square images in pixels."""
        return int(self.images["train"].shape[-1])

    @property
    def num_classes(self) -> int:
        """Number of classes (of labels, for multi-label)."""
        return len(self.class_names)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, in the order train, val, test."""
        return tuple(s for s in SPLITS if s in self.images)

    def summary(self) -> pd.DataFrame:
        """Counts per class per split.

        Returns:
            A DataFrame with columns ``split``, ``class``, ``count``: one row per split and
            class; for multi-label, the count is the number of images positive for the label.
        """
        rows = []
        for split in self.splits:
            y = self.labels[split]
            if self.task == "multi-label":
                counts = y.sum(dim=0).round().to(torch.int64)
            else:
                counts = torch.bincount(y, minlength=self.num_classes)
            for name, count in zip(self.class_names, counts.tolist()):
                rows.append({"split": split, "class": name, "count": int(count)})
        return pd.DataFrame(rows, columns=["split", "class", "count"])

    def describe_task(self) -> str:
        """The task in plain words, e.g. "Binary: each image is one of two classes (a, b)"."""
        names = _short_list(self.class_names)
        k = self.num_classes
        if self.task == "binary":
            return f"Binary: each image is one of two classes ({names})"
        if self.task == "multi-class":
            return f"Multi-class: each image is one of {k} classes ({names})"
        if self.task == "multi-label":
            return f"Multi-label: each image can have any of {k} findings, each yes or no ({names})"
        return f"Ordinal: each image gets one of {k} ordered grades, from {self.class_names[0]} to {self.class_names[-1]}"

    def __repr__(self) -> str:
        sizes = "/".join(str(int(self.images[s].shape[0])) for s in self.splits)
        return (
            f"ImageDataset({self.name!r}, source={self.source!r}, task={self.task!r}, "
            f"{self.num_classes} classes, {self.channels}x{self.image_size}x{self.image_size}, "
            f"{'/'.join(self.splits)}={sizes})"
        )


def _short_list(names: list[str], limit: int = 5) -> str:
    # A name may itself hold a comma ("normal, benign"); show it as "normal/benign".
    names = [n.replace(", ", "/") for n in names]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names) - limit} more)"
