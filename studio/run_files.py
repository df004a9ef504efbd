"""A run's files as the Compare page reads them, cached until the files change: eval.json,
the epoch metrics and meta (a damaged file reads as empty, the leaderboard's Problem column
says why), the saved test predictions, and the recipe from params.json."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from studio import ui


@st.cache_data(show_spinner=False, max_entries=256)
def _read_run(root: str, run_id: str, stamp: str) -> dict:
    from core.runs import Run

    run = Run(Path(root) / run_id)
    return {"eval": _readable(run.eval), "epochs": run.metrics(kind="epoch"), "meta": _readable(run.meta)}


def _readable(reader) -> dict:
    """What ``reader`` returns, or ``{}`` for a damaged file: the table's Problem column says
    which, and the other runs are still compared."""
    from core.errors import StudioError

    try:
        return reader() or {}
    except StudioError:
        return {}


def read_run(run_id: str) -> dict:
    """A run's eval.json, epoch metrics and meta, cached until its files change."""
    run = ui.store().get(run_id)
    stamp = "/".join(ui.file_stamp(p) for p in (run.eval_path, run.metrics_path, run.meta_path))
    return _read_run(str(ui.store().root), run_id, stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _read_predictions(root: str, run_id: str, stamp: str) -> dict | None:
    from core.runs import Run

    preds = Run(Path(root) / run_id).predictions()
    if preds is None or "test_scores" not in preds or "test_labels" not in preds:
        return None
    return {k: preds[k] for k in ("test_scores", "test_labels", "test_logits") if k in preds}


def read_predictions(run_id: str) -> dict | None:
    """A run's saved test scores, labels and (neural networks) logits, cached until the file changes."""
    run = ui.store().get(run_id)
    return _read_predictions(str(ui.store().root), run_id, ui.file_stamp(run.predictions_path))


@st.cache_data(show_spinner=False, max_entries=512)
def _read_recipe(root: str, run_id: str, stamp: str) -> str:
    from core.runs import Run
    from core.runs.leaderboard import recipe_of

    return recipe_of(Run(Path(root) / run_id).params())


def recipe_for(row: dict) -> str:
    """A run's recipe, cached until its params.json changes."""
    run = ui.store().get(row["run_id"])
    return _read_recipe(str(ui.store().root), row["run_id"], ui.file_stamp(run.params_path))
