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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        cause = _os_error_in(exc)
        if cause is not None and (cause is not exc or cause.filename is None):
            # torch.save turns a failed write (disk full) into a RuntimeError, and a write
            # to an open file names no file; hand the caller the OSError with its errno and
            # the destination, so the message can say what could not be written.
            raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from exc
        raise
    return path


def _os_error_in(exc: BaseException) -> OSError | None:
    """The first OSError with an errno in ``exc`` or its causes and contexts."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


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
