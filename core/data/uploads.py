"""The store of imported datasets: ``<data dir>/uploads/<owner>/<name>-<hash>/``.

One folder per import, named after the uploaded file and a hash of its bytes, so the same
upload again finds its folder and two owners never write into each other's. The pages
decide who may see what (private uploads in the demo or with sign-in) and which limits
apply; this module only knows folders, and takes the caps as arguments.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from core.data.safe_zip import extract_zip

UPLOADS = "uploads"  # sub-folder of the data dir that holds imported datasets


def owner_folder(owner: str) -> str:
    """A folder name for an owner: the id itself when it is plain, else a slug and a hash
    (an e-mail address never becomes a path with dots or slashes in it)."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", owner):
        return owner
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", owner).strip("-_")[:40] or "user"
    return f"{slug}-{hashlib.sha256(owner.encode()).hexdigest()[:10]}"


def uploads_root(data_root: str | os.PathLike, owner: str | None = None) -> Path:
    """Where imported datasets go: ``<data_root>/uploads/<owner>/`` (all owners' parent
    folder when ``owner`` is None)."""
    root = Path(data_root) / UPLOADS
    return root / owner_folder(owner) if owner else root


def list_uploads(data_root: str | os.PathLike, owner: str | None, private: bool) -> list[Path]:
    """Imported dataset folders, newest first.

    Args:
        data_root: the data directory (see :func:`core.paths.data_dir`).
        owner: whose imports; without one, a private store lists nothing.
        private: list only ``owner``'s imports; otherwise everyone's.

    Returns:
        The folders (hidden ones, such as an extraction in progress, left out).
    """
    if private and not owner:
        return []
    root = uploads_root(data_root, owner if private else None)
    if not root.is_dir():
        return []
    pattern = "*" if private else "*/*"
    found = [p for p in root.glob(pattern) if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def zip_upload_folder(owner_root: str | os.PathLike, filename: str, data: bytes) -> Path:
    """The folder an uploaded zip is (or would be) extracted to: ``<stem>-<8 hex of its hash>``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-_")[:40] or "images"
    digest = hashlib.sha256(data).hexdigest()[:8]
    return Path(owner_root) / f"{stem}-{digest}"


def extract_upload(data: bytes, target: str | os.PathLike, max_entries: int | None = None) -> Path:
    """Extract an uploaded zip into ``target`` all at once: into a hidden staging folder
    beside it first, renamed when complete, so a failed or half extraction leaves nothing.

    Args:
        data: the zip's bytes.
        target: the folder to create (see :func:`zip_upload_folder`).
        max_entries: the cap on the zip's entries (see :func:`core.data.safe_zip.check_zip`).

    Returns:
        ``target``.
    """
    target = Path(target)
    staging = target.with_name(f".extracting-{target.name}-{uuid.uuid4().hex[:6]}")
    try:
        extract_zip(data, staging, max_entries=max_entries)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
