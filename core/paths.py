"""Where the studio keeps its files.

Both directories are resolved at call time so that an environment variable set by a
test or by the Docker image is honoured.
"""

from __future__ import annotations

import os
from pathlib import Path


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
