"""How a finished run came out, on its card (Train, Home) and on Compare: why it stopped,
and whether its scores are near chance or below the quick classical baseline, with what
to try. The judgement is :mod:`core.honesty`'s; this module only reads and shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import streamlit as st

from core.honesty import Verdict, judge
from core.train.progress import fmt_minutes, why_stopped
from studio import ui
from studio.safe_text import md_escape


@st.cache_data(show_spinner=False, max_entries=256)
def _verdict(run_dir: str, stamp: str) -> Verdict:
    from core.models import list_classical
    from core.runs import Run

    run = Run(Path(run_dir))
    evaluation = run.eval() or {}
    meta = run.meta()
    params = run.params() or {}
    model = str(params.get("model") or meta.get("model") or "")
    return judge(evaluation.get("test"), evaluation.get("baseline"), meta.get("stop"),
                 classical=model in list_classical(), recipe=params.get("recipe"))


def verdict_for(run_id: str) -> Verdict:
    """The honesty verdict of a run, cached until its eval.json or meta.json changes; an
    empty verdict when the run cannot be read."""
    try:
        run = ui.store().get(run_id)
        stamp = ui.file_stamp(run.eval_path) + "/" + ui.file_stamp(run.meta_path)
        return _verdict(str(run.dir), stamp)
    except Exception:  # noqa: BLE001 - a damaged run shows its own error elsewhere; no warning here
        ui.log.exception("could not judge run %s", run_id)
        return Verdict()


def show_verdict(verdict: Verdict, who: str | None = None) -> None:
    """A warning box: what is wrong, then what to try (nothing when the run looks fine).

    Args:
        verdict: :func:`verdict_for`'s result.
        who: the run's name, to start the box with (Compare shows several runs).
    """
    if verdict.ok:
        return
    head = f"**{md_escape(who)}:** " if who else ""
    lines = [head + " ".join(md_escape(p) for p in verdict.problems), "", "What to try:"]
    lines += [f"- {md_escape(a)}" for a in verdict.advice]
    st.warning("\n".join(lines), icon=":material/report:")


def progress_text(meta: Mapping[str, Any], epochs: Any) -> str:
    """The running card's line: ``Epoch 3 of 10 · about 40 s left (time limit 2 min)``."""
    epoch = meta.get("epoch") or 0
    eta = meta.get("eta_seconds")
    left = f" · {ui.fmt_estimate(eta)} left" if isinstance(eta, (int, float)) else " · estimating time left..."
    limit = meta.get("time_limit_minutes")
    if isinstance(limit, (int, float)) and limit > 0 and isinstance(eta, (int, float)):
        left += f" (time limit {fmt_minutes(limit)})"
    return f"Epoch {max(1, int(epoch))} of {epochs}{left}"


def finished_text(meta: Mapping[str, Any], row: Mapping[str, Any], classical: bool) -> str:
    """The finished card's sentence: time, test scores and why it stopped."""
    text = (f"Finished in {ui.fmt_duration(meta.get('train_seconds'))}: test accuracy "
            f"{ui.fmt_metric(row.get('test_acc'))}, test AUC {ui.fmt_metric(row.get('test_auc'))}.")
    if classical:
        return text + " Fitted in one pass: a classical baseline has no epochs."
    why = why_stopped(meta)
    return f"{text} {why}" if why else text


def cancelled_text(meta: Mapping[str, Any]) -> str:
    """The cancelled card's sentence, with the epoch it reached."""
    why = why_stopped({**meta, "status": "cancelled"}) or "Cancelled."
    return f"{why} Press Resume to continue it."


def turns_text(meta: Mapping[str, Any]) -> str | None:
    """What the default recipe's turn check decided (core.data.turn_check), or None when the
    run made no such check."""
    check = meta.get("turn_check")
    if not isinstance(check, Mapping) or check.get("skipped") or not check.get("summary"):
        return None
    used = ("Trained on turned and upside-down copies too" if check.get("allows_turns")
            else "Trained without turned copies")
    return f"{used}: {check['summary']}."
