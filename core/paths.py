"""Where the studio keeps its files, and how a dataset kept there is named for people.

Both directories are resolved at call time so that an environment variable set by a
test or by the Docker image is honoured.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# Imported folders and .npz files are kept as "<name>-<8 hex digits of their content hash>"
# (core.data.uploads, core.data.npz_source); people named them <name>.
_CONTENT_HASH = re.compile(r"-[0-9a-f]{8}$")


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The directory holding MedMNIST ``.npz`` files and imported datasets.

    Args:
        override: an explicit directory (``--data-dir``); wins over the environment.

    Returns:
        ``override``, else ``$STUDIO_DATA_DIR``, else ``~/.medmnist`` (the medmnist
        package's own default, so files a user already downloaded are reused).
    """
    if override:
        return Path(override).expanduser()
    env = os.environ.get("STUDIO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".medmnist"


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    """The directory holding one sub-directory per run.

    Args:
        override: an explicit directory (``--runs-dir``); wins over the environment.

    Returns:
        ``override``, else ``$STUDIO_RUNS_DIR``, else ``./runs``.
    """
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get("STUDIO_RUNS_DIR", "runs")).expanduser()


def readable_dataset_name(spec: Any) -> str:
    """A dataset as a person knows it, never the path it is kept under on this machine.

    Args:
        spec: a MedMNIST name (kept as it is), or the path of a folder, ``.zip`` or
            ``.npz`` dataset (``/srv/data/uploads/ab12/organa_folder-1a2b3c4d``).

    Returns:
        The name, or the path's last part without ``.zip``/``.npz`` and without the
        ``-<8 hex>`` content hash the studio adds to imports (``organa_folder``);
        ``"-"`` for no dataset.
    """
    if spec is None or not str(spec).strip():
        return "-"
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if "/" not in text and "\\" not in text:
        return text
    last = re.split(r"[/\\]+", text.rstrip("/\\"))[-1] or text
    stem = last[:-4] if last.lower().endswith((".zip", ".npz")) else last
    return _CONTENT_HASH.sub("", stem) or last
