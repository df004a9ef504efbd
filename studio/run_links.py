"""Links that open one run, and a run picker that stays on the run the person chose.

A link to a run carries its id in the URL (``?run=<run id>``), so "Classify images with it"
on a finished run's card opens that run on Classify, whatever else finished meanwhile.

The picker is keyed by run id, never by position in the list: runs that finish (in another
tab, from the queue) add options at the top, and a picker that remembered "the first
option" or let Streamlit reset it would quietly answer with another model. The person's
choice lives in session state and in the URL and changes only when they pick another run
or follow a link to one.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from studio import ui

PARAM = "run"  # the query parameter that names a run


def run_link(page: str, run_id: str, label: str, icon: str | None = None) -> None:
    """A link to a page of the studio that opens it on one run.

    Args:
        page: a key of :data:`studio.ui.PAGES` (``"classify"``, ``"compare"``).
        run_id: the run to open.
        label: the link text (Markdown: escape any user text in it).
        icon: a Material icon.
    """
    st.page_link(ui.PAGES[page], label=label, icon=icon, query_params={PARAM: run_id})


def linked_run() -> str | None:
    """The run id the page was opened with (``?run=...``), or None."""
    value = st.query_params.get(PARAM)
    return str(value) if value else None


def choose_run(label: str, options: dict[str, str], key: str, describe_missing: Callable[[str], str],
               help: str | None = None) -> str:
    """A selectbox of runs that keeps the person's choice by run id.

    Which run is shown, in order: the run named by the URL (a link, or the person's last
    pick, which is written back to the URL); else the run picked earlier in this session;
    else the first option. A run that was chosen or linked but can no longer be used
    (deleted, not finished) is replaced by the first option with a warning that says so,
    never silently.

    Args:
        label: the widget label.
        options: run id -> the text shown for it, in display order (at least one).
        key: the widget's session-state key.
        describe_missing: run id -> why that run is not offered (for the warning).
        help: the widget's tooltip.

    Returns:
        The chosen run id.
    """
    pick_key = f"{key}__chosen"  # the person's choice; the widget's own state can be reset
    linked = linked_run()
    chosen = st.session_state.get(pick_key)
    if linked is not None:
        if linked in options:
            chosen = linked
        elif linked != st.session_state.get(f"{key}__refused"):
            st.session_state[f"{key}__refused"] = linked
            st.warning(describe_missing(linked), icon=":material/warning:")
    if chosen is not None and chosen not in options:
        st.warning(describe_missing(chosen), icon=":material/warning:")
        chosen = None
    if chosen is None:
        chosen = next(iter(options))
    st.session_state[pick_key] = chosen
    st.session_state[key] = chosen
    st.query_params[PARAM] = chosen

    def picked() -> None:
        st.session_state[pick_key] = st.session_state[key]
        st.query_params[PARAM] = st.session_state[key]

    return st.selectbox(label, list(options), format_func=options.get, key=key, on_change=picked, help=help)


def can_classify(row: dict) -> bool:
    """Whether a run (an index row) has a model Classify can use: finished, with a best
    checkpoint (a classical baseline keeps none)."""
    from pathlib import Path

    from core.runs import Run

    return row.get("status") == "completed" and Run(Path(row["dir"])).best_checkpoint.is_file()


def open_links(rows: list[dict], compare: bool = True) -> None:
    """One line of links per finished run: open it on Classify (when it can classify) and
    on Compare. Run names are visitors' text, so they are escaped."""
    from studio.safe_text import md_escape

    for r in rows:
        if r.get("status") != "completed":
            continue
        name = md_escape(r.get("name") or r["run_id"])
        cols = st.columns([1, 1, 1]) if compare else st.columns([2, 1])  # wide enough for a run name
        with cols[0]:
            if can_classify(r):
                run_link("classify", r["run_id"], f"Classify with {name}", icon=":material/image_search:")
            else:
                st.caption(f"{name}: a classical baseline, scores only")
        if compare:
            with cols[1]:
                run_link("compare", r["run_id"], f"Compare {name}", icon=":material/leaderboard:")
