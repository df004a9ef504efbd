"""Extract an untrusted zip without letting it write outside its folder or fill the disk.

Every entry is checked before a single byte is written: absolute paths, ``..`` components
and symbolic links are refused, and so is an archive whose declared sizes add up to a zip
bomb. While extracting, the bytes actually produced are counted against the declared sizes,
so a header that lies cannot get past the limits either.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

from core.errors import DataError

# Limits a hand-made dataset zip never comes near; a bomb passes all of them only by being
# harmless. The ratio is only judged above RATIO_MIN_BYTES, because a tiny text file of
# repeated bytes compresses very well and is no threat.
MAX_TOTAL_BYTES = 2 * 1024**3
MAX_RATIO = 200
MAX_ENTRIES = 50_000
RATIO_MIN_BYTES = 1024**2

_CHUNK = 1024**2

# The longest file or folder name (in bytes, UTF-8) that ext4, XFS, APFS and NTFS all accept.
NAME_MAX_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")


def is_ignored(name: str) -> bool:
    """Whether a member is macOS or hidden-file clutter (``__MACOSX/``, ``.DS_Store``, ``.x/``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def entry_cap(max_entries: int | None) -> tuple[int, str]:
    """The cap on a zip's entries and how a message names it: :data:`MAX_ENTRIES`, or a
    caller's lower cap (the hosted demo's ``max_zip_files``), then said to be "in this demo"."""
    if max_entries is not None and max_entries < MAX_ENTRIES:
        return max_entries, " in this demo"
    return MAX_ENTRIES, ""


def check_zip(zf: zipfile.ZipFile, label: str = "the zip", max_entries: int | None = None) -> list[zipfile.ZipInfo]:
    """Check every entry of an open zip and return the ones worth extracting.

    Args:
        zf: the open archive.
        label: what to call it in messages.
        max_entries: a cap on entries below :data:`MAX_ENTRIES` (the demo's
            the demo policy's ``Limits.max_zip_files``); None keeps the studio's own.

    Returns:
        The file entries to extract (no directories, no ``__MACOSX/`` or dotfiles).
    """
    infos = zf.infolist()
    if not infos:
        raise DataError(f"{label} is empty; zip the folder that holds one sub-folder of images per class")
    cap, where = entry_cap(max_entries)
    if len(infos) > cap:
        raise DataError(
            f"{label} has {len(infos)} entries, more than the limit of {cap}{where}; split it into smaller zips"
        )
    total = compressed = 0
    keep = []
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            raise DataError(f"{label} contains an entry with an absolute path ({name!r}) and was refused; zip the folder again with relative paths")
        if ".." in parts:
            raise DataError(f"{label} contains an entry that points outside the folder ({name!r}) and was refused; zip the folder again without '..' in paths")
        _check_name_lengths(name, label)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{label} contains a symbolic link ({name!r}) and was refused; zip the real files instead of links")
        if info.flag_bits & 0x1:
            raise DataError(f"{label} is password-protected ({name!r}); zip the folder again without a password")
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise DataError(
                f"{label} was refused as a possible zip bomb: {name!r} expands {info.file_size // max(info.compress_size, 1)} "
                f"times (limit {MAX_RATIO}); images compress far less than that, so check the file"
            )
        total += info.file_size
        compressed += info.compress_size
        if not info.is_dir() and not is_ignored(name):
            keep.append(info)
    if total > MAX_TOTAL_BYTES:
        raise DataError(
            f"{label} would expand to {total / 1024**3:.1f} GB, more than the limit of "
            f"{MAX_TOTAL_BYTES / 1024**3:.1f} GB; import a smaller set of images"
        )
    if total > RATIO_MIN_BYTES and total > MAX_RATIO * max(compressed, 1):
        raise DataError(
            f"{label} was refused as a possible zip bomb: it expands {total // max(compressed, 1)} times "
            f"(limit {MAX_RATIO}); images compress far less than that, so check the file"
        )
    return keep


def _check_name_lengths(name: str, label: str) -> None:
    # A class folder named with 300 characters cannot be created on any common file system;
    # say so, instead of the misleading "clashes with another" the failed mkdir would give.
    for part in name.replace("\\", "/").split("/"):
        nbytes = len(part.encode("utf-8", "surrogateescape"))
        if nbytes > NAME_MAX_BYTES:
            raise DataError(f"{label} {too_long_name(part)}; shorten that name and zip the folder again")


def too_long_name(part: str) -> str:
    """The words for a file or folder name over :data:`NAME_MAX_BYTES`, e.g. "has a name of 300
    characters ('xxxxxxxxxxxxxxxxxxxx...'), more than the 255 a file or folder name may have"."""
    nbytes = len(part.encode("utf-8", "surrogateescape"))
    size = f"{len(part)} characters" if nbytes == len(part) else f"{len(part)} characters ({nbytes} bytes in UTF-8)"
    return (f"has a file or folder name of {size} ('{part[:24]}...'), more than the {NAME_MAX_BYTES} bytes "
            "a file or folder name may have")


def extract_zip(src: str | os.PathLike | bytes | BinaryIO, target_dir: str | os.PathLike,
                max_entries: int | None = None) -> list[Path]:
    """Extract a zip into ``target_dir`` after checking every entry.

    Args:
        src: the zip's path, its bytes, or an open binary file.
        target_dir: where to extract (created if missing); nothing is written elsewhere.
        max_entries: a cap on entries below :data:`MAX_ENTRIES` (see :func:`check_zip`).

    Returns:
        The extracted files, in archive order (``__MACOSX/`` and dotfiles are left out).
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        label, source = "the zip", io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)):
        label, source = Path(src).name, src
    else:
        label, source = "the zip", src
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        zf = zipfile.ZipFile(source)
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"{label} could not be opened ({exc.strerror or exc}); check the path") from exc
    except Exception as exc:  # BadZipFile, and struct/value errors on hostile headers
        raise DataError(f"{label} is not a valid zip file ({exc}); create it again with your system's zip tool") from exc
    out = []
    with zf:
        entries = check_zip(zf, label, max_entries)
        for info in entries:
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
            dest = root.joinpath(*parts)
            # Belt and braces after check_zip: the resolved path must stay under the root.
            if not dest.resolve().is_relative_to(root) or dest.resolve() == root:
                raise DataError(f"{label} contains an entry that points outside the folder ({info.filename!r}) and was refused")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # e.g. a file and a folder with the same name
                if exc.errno == errno.ENAMETOOLONG:
                    raise DataError(f"{label} has an entry whose path is too long for this system "
                                    f"({len(str(dest))} characters with the folder it is extracted to); "
                                    "use shorter folder names and zip it again") from exc
                raise DataError(f"{label} has an entry that clashes with another ({info.filename!r}); create the zip again") from exc
            _copy_member(zf, info, dest, label)
            out.append(dest)
    return out


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, label: str) -> None:
    written = 0
    try:
        with zf.open(info) as src, open(dest, "wb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise DataError(f"{label} was refused: {info.filename!r} holds more data than its header declares")
                dst.write(chunk)
    except DataError:
        _remove(dest)
        raise
    except Exception as exc:  # CRC errors, truncated data, unsupported compression
        _remove(dest)
        raise DataError(f"{label} is damaged: {info.filename!r} could not be extracted ({exc}); create the zip again") from exc


def _remove(path: Path) -> None:
    if path.is_file() and not path.is_symlink():
        path.unlink()
