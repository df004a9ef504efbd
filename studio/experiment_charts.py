"""Tables and figures of an experiment: pure functions of the leaderboard rows core gives, no
streamlit, following :mod:`studio.charts` (titles left, labels passed through html_escape).

The leaderboard table keeps run, dataset and setting text as plain cells (st.dataframe shows
them as text), and the figures escape every label a visitor could have chosen.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from studio.charts import PALETTE, _layout, value_range
from studio.safe_text import html_escape

METRIC_NAMES = {"val_auc": "validation AUC", "val_acc": "validation accuracy"}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _show(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def settings_text(row: Mapping[str, Any]) -> str:
    """A run's varied settings as ``arch=medvcnn@28 lr=0.003`` (its label when it has none);
    Auto's final run says so first (``final (trial 3's settings): ...``, or ``final (trial 0's
    settings, the default kept over trial 3): ...`` when trial 3 won on validation by less than
    its noise)."""
    settings = row.get("settings") or {}
    if not settings:
        return str(row.get("label") or "")
    text = " ".join(f"{k}={_show(v)}" for k, v in settings.items())
    trial = row.get("trial")
    if isinstance(trial, dict) and trial.get("final"):
        source, kept = trial.get("from_trial"), trial.get("default_kept")
        over = f", the default kept over trial {kept.get('over')}" if isinstance(kept, dict) else ""
        text = (f"final (trial {source}'s settings{over}): " if isinstance(source, int) else "final: ") + text
    return text


def leaderboard_frame(rows: Sequence[Mapping[str, Any]], metric: str) -> pd.DataFrame:
    """The leaderboard as a table: rank, run id, settings, status, the ranking score (the
    validation metric; the best epoch so far while a run trains), both validation scores,
    epochs, training time and the test scores (shown, never used to rank)."""
    out = []
    for r in rows:
        # An ensemble trains nothing: it averages runs listed above it.
        epochs = "-" if r.get("model") == "ensemble" else f"{r.get('epochs_done') or 0}/{r.get('epochs') or '?'}"
        out.append({"Rank": r.get("rank"), "Run": r["run_id"], "Settings": settings_text(r),
                    "Status": str(r.get("status") or "unknown"), METRIC_NAMES[metric]: _num(r.get("score")),
                    "Val ACC": _num(r.get("val_acc")), "Val AUC": _num(r.get("val_auc")), "Epochs": epochs,
                    "Seconds": _num(r.get("train_seconds")), "Test ACC": _num(r.get("test_acc")),
                    "Test AUC": _num(r.get("test_auc"))})
    # Settings last: they can be long, and the scores should stay in view.
    columns = ["Rank", "Run", "Status", METRIC_NAMES[metric], "Val ACC", "Val AUC", "Epochs", "Seconds",
               "Test ACC", "Test AUC", "Settings"]
    return pd.DataFrame(out, columns=columns)


def _ts(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        return None


def best_so_far_points(rows: Sequence[Mapping[str, Any]], started: str | None, metric: str) -> pd.DataFrame:
    """Each completed run's validation score at the minute it finished (since the experiment
    started), and the best score reached by then.

    Returns:
        Columns ``minutes, score, best, run_id, settings``, in finishing order.
    """
    start = _ts(started)
    points = []
    for r in rows:
        score = _num(r.get(metric)) if r.get(metric) is not None else _num(r.get("score"))
        end = _ts(r.get("finished"))
        if r.get("status") != "completed" or score is None or end is None:
            continue
        points.append({"minutes": max(0.0, (end - (start or end)) / 60), "score": score, "run_id": r["run_id"],
                       "settings": settings_text(r)})
    frame = pd.DataFrame(points, columns=["minutes", "score", "run_id", "settings"])
    frame = frame.sort_values("minutes", kind="stable").reset_index(drop=True)
    frame["best"] = frame["score"].cummax()
    return frame[["minutes", "score", "best", "run_id", "settings"]]


def best_so_far_chart(points: pd.DataFrame, metric: str) -> go.Figure:
    """The best validation score over the experiment's time (a step line), every finished run a dot."""
    name = METRIC_NAMES[metric]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=points["minutes"], y=points["score"], mode="markers", name="each finished run",
                             marker=dict(color=PALETTE[1], size=8),
                             text=[html_escape(f"{r}: {s}") for r, s in zip(points["run_id"], points["settings"])],
                             hovertemplate="%{text}<br>%{y:.4f} at %{x:.2f} min<extra></extra>"))
    fig.add_trace(go.Scatter(x=points["minutes"], y=points["best"], mode="lines", line_shape="hv",
                             name="best so far", line=dict(color=PALETTE[0], width=3)))
    _layout(fig, f"Best {name} so far", height=320)
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    fig.update_xaxes(title_text="minutes since the experiment started", rangemode="tozero")
    fig.update_yaxes(title_text=name, range=value_range(points["score"], from_zero=False))
    return fig


def importance_chart(importances: Mapping[str, float]) -> go.Figure:
    """Which settings mattered: Optuna's importances (they add up to 1) as horizontal bars."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[html_escape(k) for k, _ in items], orientation="h",
                           marker_color=PALETTE[0], hovertemplate="%{y}: %{x:.2f}<extra></extra>"))
    _layout(fig, "Which settings mattered (share of the score's variation)", height=80 + 34 * len(items))
    fig.update_xaxes(title_text="importance", range=[0, max(1e-9, max(importances.values())) * 1.1])
    return fig


def seeds_frame(summary: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Mean, std, n and 95 % interval of the headline metrics of a seeds experiment."""
    keep = ("acc", "auc", "macro_f1", "log_loss")
    out = []
    for key, s in summary.items():
        split, _, metric = key.partition(".")
        if metric not in keep:
            continue
        interval = ("-" if s.get("low") is None else f"{s['low']:.4f} .. {s['high']:.4f}")
        out.append({"Split": split, "Metric": metric, "Mean": _num(s.get("mean")), "Std": _num(s.get("std")),
                    "Runs": s.get("n"), "95 % interval": interval})
    return pd.DataFrame(out, columns=["Split", "Metric", "Mean", "Std", "Runs", "95 % interval"])


def ablation_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The ablation table: each variant against the reference, measured beside the paper."""
    out = [{"Variant": f"{r['variant']} vs {r['reference']}", "Metric": r["metric"], "Seed pairs": r["n_pairs"],
            "Reference": _num(r.get("reference_mean")), "Variant mean": _num(r.get("variant_mean")),
            "Measured difference": _num(r.get("difference")), "Paper's difference": _num(r.get("paper_difference")),
            "Verdict": r.get("verdict") or ""} for r in rows]
    return pd.DataFrame(out, columns=["Variant", "Metric", "Seed pairs", "Reference", "Variant mean",
                                      "Measured difference", "Paper's difference", "Verdict"])
