"""Image files, folders and zips given to ``python -m core predict``, one source at a time.

Nothing is read whole: a file is handed on as its path (the decoder checks its size with
``stat`` and its bitmap size from the header before any pixel), and a zip entry is refused
from its declared size, or copied in 1 MB pieces into a spooled temporary file (in memory up
to :data:`SPOOL_IN_MEMORY`, on disk beyond) while the bytes are counted against that size. So
a 3 GB file named ``.png`` or a zip entry declaring gigabytes costs a few megabytes of memory,
and the other images are still labelled.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from core.data.images import MAX_FILE_BYTES, file_size_text
from core.data.safe_zip import MAX_ENTRIES, MAX_RATIO, RATIO_MIN_BYTES, is_ignored
from core.errors import DataError

SPOOL_IN_MEMORY = 16 * 1024**2
_CHUNK = 1024**2


def iter_image_sources(
    paths: Iterable[str | Path], max_bytes: int = MAX_FILE_BYTES, max_entries: int | None = None
) -> Iterator[tuple[str, Path | BinaryIO | None, str | None]]:
    """Yield ``(display name, source, error)`` for every file of the given files, folders and zips.

    ``source`` is a :class:`~pathlib.Path`, or a seekable binary file for a zip entry, which is
    valid only until the next item is asked for (decode it at once); it is None when ``error``
    says why the file cannot be used. Folders are walked sorted, hidden files left out; zip
    entries come in archive order without ``__MACOSX/`` and dotfiles, named ``zip:entry``.

    Args:
        paths: files, folders and ``.zip`` files.
        max_bytes: the largest file or zip entry accepted (checked before reading it).
        max_entries: a lower cap than :data:`~core.data.safe_zip.MAX_ENTRIES` on a zip's
            entries (the demo policy's ``Limits.max_zip_files``); None keeps that one.

    Returns:
        An iterator; each item is as above.
    """
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")):
                yield str(f), f, None
        elif p.suffix.lower() == ".zip" and p.is_file():
            yield from _zip_sources(p, max_bytes, max_entries)
        elif p.is_file():
            yield str(p), p, None
        else:
            yield str(p), None, "no such file or folder"


def _zip_sources(path: Path, max_bytes: int, max_entries: int | None):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield str(path), None, f"unreadable zip: {exc}"
        return
    with zf:
        infos = zf.infolist()
        limit = MAX_ENTRIES if max_entries is None else min(MAX_ENTRIES, max_entries)
        if len(infos) > limit:
            yield str(path), None, (f"unreadable zip: {path.name} has {len(infos)} entries, more than the limit of "
                                    f"{limit}; split it into smaller zips")
            return
        for info in infos:
            if info.is_dir() or is_ignored(info.filename):
                continue
            name = f"{path.name}:{info.filename}"
            problem = _entry_problem(info, max_bytes)
            if problem:
                yield name, None, problem
                continue
            try:
                spool = _spool(zf, info)
            except DataError as exc:
                yield name, None, str(exc)
                continue
            with spool:
                yield name, spool, None


def _entry_problem(info: zipfile.ZipInfo, max_bytes: int) -> str | None:
    """Why a zip entry is refused from its header alone, or None."""
    entry = Path(info.filename).name or info.filename
    if info.flag_bits & 0x1:
        return f"{entry} is password-protected; zip it again without a password"
    if info.file_size > max_bytes:
        return (f"{entry} declares {file_size_text(info.file_size)}, more than the limit of {file_size_text(max_bytes)} for one "
                "image file; it was not read")
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return (f"{entry} expands {info.file_size // max(info.compress_size, 1)} times (limit {MAX_RATIO}), "
                "which no image does; it was not read as a possible zip bomb")
    return None


def _spool(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
    entry = Path(info.filename).name or info.filename
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="studio-entry-")
    written = 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > info.file_size:  # zipfile stops at the declared size; be sure
                    raise DataError(f"{entry} holds more data than its zip header declares; it was not used")
                out.write(chunk)
    except DataError:
        out.close()
        raise
    except Exception as exc:  # CRC errors, truncated data, unsupported compression
        out.close()
        raise DataError(f"{entry} could not be read from the zip ({type(exc).__name__}: {exc}); zip it again") from exc
    out.seek(0)
    return out


def count_image_sources(paths: Iterable[str | Path]) -> int | None:
    """About how many items :func:`iter_image_sources` yields (for a progress bar), or None."""
    n = 0
    try:
        for p in map(Path, paths):
            if p.is_dir():
                n += sum(1 for x in p.rglob("*") if x.is_file() and not x.name.startswith("."))
            elif p.suffix.lower() == ".zip" and p.is_file():
                try:
                    with zipfile.ZipFile(p) as zf:
                        n += sum(1 for i in zf.infolist() if not i.is_dir() and not is_ignored(i.filename)) or 1
                except (zipfile.BadZipFile, OSError, ValueError, EOFError):
                    n += 1
            else:
                n += 1
    except OSError:
        return None
    return n
