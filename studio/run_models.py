"""Run models loaded once and shared by the pages (Classify and Compare).

A loaded model is a shared object, so it lives in ``st.cache_resource``, keyed by the run's
directory and its best checkpoint's modification stamp (a retrained or re-evaluated run
gets a fresh copy). Explanations hook layers and Monte-Carlo dropout switches dropout on,
both for the length of one call; two sessions doing that to one module at the same time
would see each other's hooks and masks. So every use goes through :attr:`SharedModel.lock`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from studio import ui


@dataclass
class SharedModel:
    """A :class:`core.inference.LoadedModel` and the lock to hold while using it."""

    lm: Any
    lock: Any = field(default_factory=threading.Lock)


@st.cache_resource(show_spinner=False, max_entries=6)
def _load(run_dir: str, stamp: str) -> SharedModel:
    from core.inference import load_run_model
    from core.runs import Run

    return SharedModel(load_run_model(Run(Path(run_dir)), "best", device="cpu"))


def shared_model(run) -> SharedModel:
    """A run's best model on the CPU in eval mode, loaded once per checkpoint version.

    Args:
        run: a :class:`core.runs.Run` with a best checkpoint.

    Returns:
        The shared model; hold its ``lock`` while predicting or explaining.
    """
    return _load(str(Path(run.dir).resolve()), ui.file_stamp(run.best_checkpoint))
