"""Atomic file writes: write to a temporary file in the same directory, then rename.

A reader never sees a half-written file, and a failed write (disk full, killed
process) leaves the previous version in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` atomically.

    Args:
        path: the destination file.
        write: called with an open file object; it writes the content.
        mode: ``"wb"`` or ``"w"``.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write raw bytes atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths and tuples turn up in metrics and params.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
