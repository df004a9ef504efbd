"""What makes a Classify answer trustworthy to read: which run gave it, whether the image
fits that run's training data, and why a run is (not) offered.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from studio import ui
from studio.safe_text import md_escape


def usable_runs() -> tuple[list[dict], list[dict]]:
    """Completed runs that can classify (a neural network with a best checkpoint), and the
    completed classical baselines, which cannot: the studio keeps their scores, not a model
    (scikit-learn models are pickles, and the studio loads no pickles).

    Returns:
        ``(usable, classical)``; every usable row gets a ``label`` that is unique on the page.
    """
    from core.models import list_classical
    from core.runs import Run

    classical_names = set(list_classical())
    rows = ui.store().list_runs(status="completed")
    usable = [r for r in rows if Run(Path(r["dir"])).best_checkpoint.is_file()]
    classical = [r for r in rows if r.get("model") in classical_names]
    seen: dict[str, int] = {}
    for r in usable:
        label = ui.run_label(r) + (f" · test ACC {ui.fmt_metric(r['test_acc'])}" if r["test_acc"] else "")
        seen[label] = seen.get(label, 0) + 1
        # Two runs may share a name and a minute; the picker must still tell them apart.
        r["label"] = label if seen[label] == 1 else f"{label} · {r['run_id']}"
    return usable, classical


def missing_reason(run_id: str) -> str:
    """Why a run someone linked to (or chose earlier) is not offered on Classify."""
    from core.errors import StudioError
    from core.models import list_classical

    store = ui.store()
    try:
        exists = store.exists(run_id)
    except StudioError:  # an id that is not even well formed (a hand-edited link)
        exists = False
    if not exists:
        return (f"The run {md_escape(run_id)} you opened no longer exists (or never did), so no model was chosen "
                "for you; pick the model to use below.")
    run = store.get(run_id)
    meta = run.meta()
    name = md_escape(meta.get("name") or run_id)
    if run.params().get("model") in list_classical():
        return (f"“{name}” ({md_escape(run_id)}) is a classical baseline: the studio keeps its scores for "
                "comparison but not a model that could classify new images; pick a neural-network run below.")
    status = meta.get("status") or "unknown"
    if status != "completed":
        return (f"“{name}” ({md_escape(run_id)}) is {ui.status_label(status).lower()}, not finished, so it cannot "
                "classify yet; pick a finished model below, or come back when it has finished.")
    return (f"“{name}” ({md_escape(run_id)}) has no saved model to classify with; pick another model below.")


def answer_source(row: dict) -> str:
    """The run that gives the answers, for a caption: its name and id (Markdown-safe)."""
    return f"Answer from **{md_escape(row.get('name') or row['run_id'])}** (run {md_escape(row['run_id'])})"


def check_items(lm, items: list[dict]) -> None:
    """Attach a :class:`core.fit_check.FitCheck` to every classified item (``it["fit"]``)."""
    from core.fit_check import check_fit

    for it in items:
        it["fit"] = check_fit(it["tensor"], lm.channels, lm.image_size, lm.train_stats, it.get("source"),
                              it["about"]["entropy_norm"])


def fit_summary(items: list[dict]) -> None:
    """One warning above the answers when some images do not look like the training images."""
    odd = [it for it in items if not it["fit"].fits]
    if odd:
        names = ", ".join(md_escape(it["name"]) for it in odd[:5]) + (" ..." if len(odd) > 5 else "")
        st.warning(f"{len(odd)} of {len(items)} images look unlike the images this model was trained on "
                   f"({names}); read their answers with care, the reasons are given with each.",
                   icon=":material/report:")


def fit_messages(it: dict) -> None:
    """The fit warnings of one image (each its own sentence), and what could not be checked."""
    for w in it["fit"].warnings:
        st.warning(w.text, icon=":material/report:")
    if it["fit"].note:
        st.caption(it["fit"].note)
