"""Left and right: datasets whose labels name a side must never be mirrored.

A class such as ``kidney-left`` is told apart from ``kidney-right`` by where the organ lies
in the image. A left-right flip (in training, or averaged in at test time) turns one into
the other while keeping the label, which teaches the model that left is right. So when the
class names say left or right, or the person marked their own dataset as one where sides
matter, training uses no left-right flips and no turns that move the left side to the
right, and inference does no mirror averaging.

Detection is deliberately narrow: a class name is split on ``_``, ``-``, spaces (and dots
and slashes) and one of its words must be ``left`` or ``right`` (any case). Single letters
such as ``L``/``R`` and words in other languages are too ambiguous to act on ("R" may be a
grade, "links" is English too); for such data the person ticks the box on the Datasets
page, which is stored beside the imported dataset (:func:`write_mark`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

SIDE_WORDS = ("left", "right")

#: The file beside (or inside) an imported dataset that holds the person's answer.
MARK_NAME = ".studio-dataset.json"

_SPLIT = re.compile(r"[_\-\s./\\]+")


def side_words(name: Any) -> set[str]:
    """The side words (``left``, ``right``) a class name contains as whole words.

    Args:
        name: a class name, e.g. ``"kidney_left"`` or ``"Lung Right"``.

    Returns:
        A subset of ``{"left", "right"}``; empty for ``"leftover"``, ``"R"`` or ``"bright"``.
    """
    words = {w for w in _SPLIT.split(str(name).lower()) if w}
    return {w for w in words if w in SIDE_WORDS}


def lateral_classes(class_names: Iterable[Any]) -> list[str]:
    """The class names that name a side, in their order.

    Args:
        class_names: the dataset's class names.

    Returns:
        The names with ``left`` or ``right`` as a word.
    """
    return [str(n) for n in class_names if side_words(n)]


@dataclass(frozen=True)
class Laterality:
    """Whether left and right matter for a dataset, and why.

    Attributes:
        side_matters: True when images must not be mirrored.
        source: ``"class names"`` (detected), ``"marked"`` (the person said so), ``"images"``
            (a check on the training images found that mirroring changes their class:
            :mod:`core.data.mirror_check`), or ``""``.
        classes: the class names that name a side (empty when marked by hand).
        note: for ``"images"``, what the check measured.
    """

    side_matters: bool
    source: str = ""
    classes: tuple[str, ...] = ()
    note: str = ""

    def reason(self) -> str:
        """Why images are not mirrored, as a sentence fragment; ``""`` when they may be."""
        if not self.side_matters:
            return ""
        if self.source == "marked":
            return "you marked this dataset as one where left and right matter, so images are not mirrored"
        if self.source == "images":
            return (f"a check on the training images found that a mirror image changes the class ({self.note}), "
                    "so images are not mirrored")
        shown = ", ".join(self.classes[:4]) + (f" and {len(self.classes) - 4} more" if len(self.classes) > 4 else "")
        return f"classes name left and right ({shown}), so images are not mirrored"

    def to_dict(self) -> dict[str, Any]:
        """Plain values for params.json, meta.json and checkpoints."""
        return {"side_matters": self.side_matters, "source": self.source, "classes": list(self.classes),
                "note": self.note, "reason": self.reason()}

    @classmethod
    def from_dict(cls, d: Any) -> "Laterality":
        """Rebuild from :meth:`to_dict` output; anything else means "may be mirrored"."""
        if not isinstance(d, dict):
            return cls(False)
        return cls(bool(d.get("side_matters")), str(d.get("source") or ""), tuple(map(str, d.get("classes") or ())),
                   str(d.get("note") or ""))


def mark_path(spec: str | os.PathLike) -> Path:
    """Where the person's answer for an imported dataset is kept.

    Args:
        spec: an imported folder, or an imported file (``.zip``, ``.npz``).

    Returns:
        ``<folder>/.studio-dataset.json`` for a folder (hidden, so the importer skips it),
        ``.<file name>.studio-dataset.json`` beside a file.
    """
    path = Path(spec)
    if path.is_dir():
        return path / MARK_NAME
    return path.with_name(f".{path.name}{MARK_NAME}")


def read_mark(spec: str | os.PathLike | None) -> bool | None:
    """The person's answer for an imported dataset: True (sides matter), False, or None
    when they never said (or the file is unreadable: then detection decides)."""
    if spec is None:
        return None
    try:
        data = json.loads(mark_path(spec).read_text())
    except (OSError, ValueError):
        return None
    value = data.get("side_matters") if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


def write_mark(spec: str | os.PathLike, side_matters: bool) -> Path:
    """Store the person's answer beside an imported dataset (atomically).

    Args:
        spec: the imported folder or file.
        side_matters: True when left and right matter (no mirroring).

    Returns:
        The file written.
    """
    from core.atomic import write_json

    return write_json(mark_path(spec), {"side_matters": bool(side_matters)})


def dataset_laterality(spec: Any, class_names: Iterable[Any]) -> Laterality:
    """Whether a dataset's images may be mirrored.

    The person's own answer for an imported dataset wins (they know their images); without
    one, the class names decide.

    Args:
        spec: the dataset spec (MedMNIST name or imported path); MedMNIST names have no mark.
        class_names: its class names.

    Returns:
        The :class:`Laterality`.
    """
    named = tuple(lateral_classes(class_names))
    mark = read_mark(spec) if _is_path(spec) else None
    if mark is True:
        return Laterality(True, "marked" if not named else "class names", named)
    if mark is False:
        return Laterality(False, "marked", named)
    return Laterality(bool(named), "class names" if named else "", named)


def _is_path(spec: Any) -> bool:
    if not isinstance(spec, (str, os.PathLike)):
        return False
    text = os.fspath(spec)
    return ("/" in text or os.sep in text) and Path(text).exists()


def spec_class_names(spec: Any) -> list[str] | None:
    """A dataset's class names without loading its images, or None when unknown.

    MedMNIST names come from :mod:`core.data.medmnist_info`; an imported folder's from its class folders
    (inside ``train/`` when it has split folders), as :func:`core.data.load_image_folder`
    finds them.
    """
    from core.data.medmnist_info import is_medmnist, medmnist_facts

    if not isinstance(spec, (str, os.PathLike)):
        return None
    text = os.fspath(spec).strip()
    if is_medmnist(text):
        return list(medmnist_facts(text).class_names)
    path = Path(text)
    if not path.is_dir():
        return None
    # The importer's own layout rules, so the names are the ones training will see.
    from core.data.folder_layout import layout_of, subdirs, unwrap
    from core.errors import StudioError

    try:
        layout = layout_of(unwrap(path), path.name)
        return [d.name for d in subdirs(layout.get("train") or layout[None])]
    except (StudioError, OSError, KeyError):
        return None


def spec_laterality(spec: Any) -> Laterality | None:
    """:func:`dataset_laterality` from the spec alone (see :func:`spec_class_names`); None
    when the class names cannot be read without loading the dataset."""
    names = spec_class_names(spec)
    if names is None:
        return None
    return dataset_laterality(spec, names)
