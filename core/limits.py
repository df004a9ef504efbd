"""Limits of the hosted demo (``STUDIO_DEMO=1``): what one visitor may ask of a shared server.

Outside the demo nothing here restricts anything beyond the studio's own caps (see
:mod:`core.train.config`). In the demo the limits are read from the environment each time
they are needed, so an operator changes them with environment variables and a restart:

==============================  =======  ==================================================
variable                        default  limits
==============================  =======  ==================================================
``STUDIO_DEMO_MAX_EPOCHS``      20       epochs of one run
``STUDIO_DEMO_IMAGE_SIZES``     28,64    image sizes a run may use (comma separated)
``STUDIO_DEMO_MAX_IMAGES``      30000    images in a dataset a run trains on (all splits)
``STUDIO_DEMO_MAX_RUNS``        2        runs one session has queued or running at once
``STUDIO_DEMO_MAX_UPLOAD_MB``   50       size of one uploaded file
``STUDIO_DEMO_MAX_UPLOADS``     5        image folders one session may import
``STUDIO_DEMO_MAX_ZIP_FILES``   5000     entries in an uploaded zip
``STUDIO_DEMO_EXP_RUNS``        8        runs of one experiment (sweep, seeds, ablation)
``STUDIO_DEMO_EXP_MINUTES``     30       estimated minutes of all of a visitor's experiments
==============================  =======  ==================================================

This module is policy only: it reads the environment and judges numbers it is given (it
imports neither :mod:`core.data` nor :mod:`core.train`). The callers apply it in core
(:func:`core.train.config.validate` counts the dataset, :meth:`core.runs.JobRunner.submit`,
:meth:`core.runs.RunStore.delete`) and pass its caps down (``max_entries`` of
:func:`core.data.safe_zip.extract_zip` and of :func:`core.data.inputs.iter_image_sources`),
so the pages and ``python -m core`` obey the same limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from core.errors import ConfigError, DataError, StudioError

DEMO_ENV = "STUDIO_DEMO"

# Demo defaults: small enough that a 2-core server keeps up with a handful of visitors, large
# enough for every 28 px MedMNIST set up to OrganSMNIST (25,221 images) to train in minutes.
_DEMO_DEFAULTS = {
    "max_epochs": 20,
    "image_sizes": (28, 64),
    "max_images": 30_000,
    "max_active_runs": 2,
    "max_upload_mb": 50,
    "max_uploads": 5,
    "max_zip_files": 5_000,
    "max_experiment_runs": 8,
    "max_experiment_minutes": 30,
}
_ENV_NAMES = {
    "max_epochs": "STUDIO_DEMO_MAX_EPOCHS",
    "image_sizes": "STUDIO_DEMO_IMAGE_SIZES",
    "max_images": "STUDIO_DEMO_MAX_IMAGES",
    "max_active_runs": "STUDIO_DEMO_MAX_RUNS",
    "max_upload_mb": "STUDIO_DEMO_MAX_UPLOAD_MB",
    "max_uploads": "STUDIO_DEMO_MAX_UPLOADS",
    "max_zip_files": "STUDIO_DEMO_MAX_ZIP_FILES",
    "max_experiment_runs": "STUDIO_DEMO_EXP_RUNS",
    "max_experiment_minutes": "STUDIO_DEMO_EXP_MINUTES",
}


@dataclass(frozen=True)
class Limits:
    """What a visitor may do; ``None`` means no limit beyond the studio's own caps.

    Attributes:
        demo: the hosted demo is on (``STUDIO_DEMO=1``).
        max_epochs: epochs of one run.
        image_sizes: image sizes a run may use.
        max_images: images (all splits together) of a dataset a run trains on.
        max_active_runs: runs one session (owner) may have queued or running at once.
        max_upload_mb: megabytes of one uploaded file.
        max_uploads: image folders one session may import.
        max_zip_files: entries of an uploaded zip.
        max_experiment_runs: runs one experiment may plan (:mod:`core.experiments`).
        max_experiment_minutes: estimated minutes of all of one visitor's experiments
            together (an Auto search counts its budget).
        own_runs_only: a session may delete, cancel and resume only the runs it started.
        private_uploads: a session sees only the image folders it imported.
    """

    demo: bool = False
    max_epochs: int | None = None
    image_sizes: tuple[int, ...] | None = None
    max_images: int | None = None
    max_active_runs: int | None = None
    max_upload_mb: int | None = None
    max_uploads: int | None = None
    max_zip_files: int | None = None
    max_experiment_runs: int | None = None
    max_experiment_minutes: int | None = None
    own_runs_only: bool = False
    private_uploads: bool = False

    def describe(self) -> list[str]:
        """The limits as short phrases for a person, e.g. ``"at most 20 epochs per run"``."""
        if not self.demo:
            return []
        out = []
        if self.max_epochs is not None:
            out.append(f"at most {self.max_epochs} epochs per run")
        if self.image_sizes is not None:
            out.append(f"image sizes {', '.join(map(str, self.image_sizes))} px")
        if self.max_images is not None:
            out.append(f"datasets of at most {self.max_images:,} images")
        if self.max_active_runs is not None:
            out.append(f"{self.max_active_runs} run{'s' if self.max_active_runs != 1 else ''} "
                       "queued or training per visitor")
        if self.max_upload_mb is not None:
            out.append(f"uploads of at most {self.max_upload_mb} MB")
        if self.max_uploads is not None:
            out.append(f"{self.max_uploads} imported image folders per visitor")
        if self.max_zip_files is not None:
            out.append(f"zips of at most {self.max_zip_files:,} files")
        if self.max_experiment_runs is not None:
            out.append(f"experiments of at most {self.max_experiment_runs} runs")
        if self.max_experiment_minutes is not None:
            out.append(f"{self.max_experiment_minutes} minutes of experiments per visitor")
        if self.own_runs_only:
            out.append("you can delete or cancel only your own runs")
        return out


def demo_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``STUDIO_DEMO`` is set to something other than empty, 0, false, no or off."""
    env = os.environ if env is None else env
    return env.get(DEMO_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def current_limits(env: Mapping[str, str] | None = None) -> Limits:
    """The limits in force now, from the environment.

    Args:
        env: the environment to read; defaults to ``os.environ``.

    Returns:
        ``Limits()`` (no limits) outside the demo; the demo limits, with any
        ``STUDIO_DEMO_*`` overrides, inside it.

    Raises:
        ConfigError: when an override is not a valid value (an operator's mistake).
    """
    env = os.environ if env is None else env
    if not demo_enabled(env):
        return Limits()
    values = {}
    for field, default in _DEMO_DEFAULTS.items():
        name = _ENV_NAMES[field]
        raw = env.get(name, "").strip()
        if not raw:
            values[field] = default
        elif field == "image_sizes":
            values[field] = _sizes(name, raw)
        else:
            values[field] = _positive_int(name, raw)
    return Limits(demo=True, own_runs_only=True, private_uploads=True, **values)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {raw!r}; fix it in the server's environment")
    return value


def _sizes(name: str, raw: str) -> tuple[int, ...]:
    from core.vocab import IMAGE_SIZES

    try:
        sizes = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        sizes = ()
    if not sizes or any(s not in IMAGE_SIZES for s in sizes):
        raise ConfigError(
            f"{name} must list image sizes from {', '.join(map(str, IMAGE_SIZES))} separated by commas, "
            f"not {raw!r}; fix it in the server's environment"
        )
    return sizes


# ---------------------------------------------------------------------------- checks
def check_upload_size(nbytes: int, filename: str, limits: Limits | None = None) -> None:
    """Refuse an upload larger than the demo allows.

    Raises:
        DataError: when ``nbytes`` is over ``max_upload_mb``.
    """
    limits = limits or current_limits()
    if limits.max_upload_mb is not None and nbytes > limits.max_upload_mb * 1024**2:
        raise DataError(
            f"{filename} is {nbytes / 1024**2:.1f} MB, more than the {limits.max_upload_mb} MB this demo accepts; "
            "upload fewer or smaller images"
        )


def check_upload_count(n_imported: int, what: str = "image folders", limits: Limits | None = None) -> None:
    """Refuse one more import when a visitor already keeps as many as the demo allows.

    Args:
        n_imported: how many this visitor has imported.
        what: what they are called in the message ("image folders", "datasets").
        limits: the limits in force; defaults to :func:`current_limits`.

    Raises:
        StudioError: when ``n_imported`` has reached ``max_uploads``.
    """
    limits = limits or current_limits()
    if limits.max_uploads is not None and n_imported >= limits.max_uploads:
        raise StudioError(
            f"you have imported {limits.max_uploads} {what}, the most this demo keeps per visitor; "
            "train on one of them instead"
        )


def check_dataset_size(spec: str, n_images: int | None, limits: Limits | None = None) -> None:
    """Refuse a dataset with more images than the demo trains on.

    Args:
        spec: the dataset (MedMNIST name or path; its name is quoted).
        n_images: its images, counted up to one past ``max_images``
            (:func:`core.data.count_dataset_images` with ``stop_after=max_images + 1``);
            None when it cannot be told (loading it will say what is wrong).
        limits: the limits in force; defaults to :func:`current_limits`.

    Raises:
        ConfigError: when the dataset has more than ``max_images`` images.
    """
    limits = limits or current_limits()
    if limits.max_images is None or n_images is None or n_images <= limits.max_images:
        return
    # A folder is counted only up to one past the limit, so its exact size is unknown.
    amount = f"more than {limits.max_images:,}" if n_images == limits.max_images + 1 else f"{n_images:,}"
    raise ConfigError(
        f"{_dataset_name(spec)} has {amount} images and this demo trains on at most "
        f"{limits.max_images:,}; pick a smaller dataset"
    )


def _dataset_name(spec: str) -> str:
    text = str(spec).strip()
    return Path(text).name if ("/" in text or os.sep in text) else text
