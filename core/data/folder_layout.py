"""How an image folder is laid out: class folders, optional split folders, a wrapping folder.

Read by the folder importer (:mod:`core.data.folder_source`) and by the checks that look at a
folder without decoding it (:mod:`core.data.split_check` counts its images,
:mod:`core.data.laterality` reads its class names), so all three see the same classes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.data.images import is_image_candidate
from core.data.safe_zip import is_ignored
from core.errors import DataError

SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def visible(entries) -> list[Path]:
    """The entries that are not clutter (``__MACOSX``, dotfiles), in natural order."""
    return sorted((e for e in entries if not is_ignored(e.name)), key=lambda p: natural_key(p.name))


def natural_key(name: str):
    """Sort key that puts ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)] + [name]


def subdirs(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder``, in natural order."""
    # Links are followed: a local folder is the user's own (datasets are often built from
    # links), and an extracted zip never holds one (safe_zip refuses them).
    return [p for p in visible(folder.iterdir()) if p.is_dir()]


def files_below(folder: Path) -> list[Path]:
    """Every visible file at any depth below ``folder``, in natural order of their paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_ignored(d)]
        found += [Path(dirpath) / f for f in filenames if not is_ignored(f)]
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])


def is_image_name(path: Path) -> bool:
    """Whether the importer picks the file up (by its name; the content decides the decoder)."""
    return is_image_candidate(path)


def unwrap(root: Path) -> Path:
    """``root``, or the single folder that wraps its content (what zipping a folder gives)."""
    # Zipping "my_data/" yields a single top folder; look through it unless it is itself a
    # class or split folder (one that holds images rather than folders). A few levels at
    # most: a link to a parent folder would otherwise be followed for ever.
    for _ in range(8):
        children = visible(root.iterdir())
        dirs = [c for c in children if c.is_dir()]
        has_images = any(c.is_file() and is_image_name(c) for c in children)
        if len(dirs) != 1 or has_images or dirs[0].name.lower() in SPLIT_FOLDERS or not subdirs(dirs[0]):
            return root
        root = dirs[0]
    return root


def layout_of(root: Path, label: str) -> dict[str | None, Path]:
    """Split -> folder of class folders; ``{None: root}`` when there are no split folders.

    Raises:
        DataError: split folders mixed with others, two folders for one split, or no train/.
    """
    dirs = subdirs(root)
    named = [d for d in dirs if d.name.lower() in SPLIT_FOLDERS]
    if not named:
        return {None: root}
    if len(named) != len(dirs):
        others = ", ".join(d.name for d in dirs if d not in named)
        raise DataError(
            f"{label} mixes split folders ({', '.join(d.name for d in named)}) with other folders ({others}); "
            "put every class folder inside train/, val/ and test/, or use no split folders at all"
        )
    layout: dict[str | None, Path] = {}
    for d in named:
        key = SPLIT_FOLDERS[d.name.lower()]
        if key in layout:
            raise DataError(f"{label} has two folders for the {key} split ({layout[key].name}, {d.name}); keep one")
        layout[key] = d
    if "train" not in layout:
        raise DataError(f"{label} has {', '.join(d.name for d in named)} folders but no train/ folder; add train/ with one sub-folder per class")
    return layout
