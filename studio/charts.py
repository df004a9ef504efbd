"""Plotly figure builders for the pages: pure functions of plain data, no streamlit.

Each takes lists, dicts or DataFrames (what the run store and core return) and gives back
a ``plotly.graph_objects.Figure`` with readable titles and axis names. Plotly reads
``<a href>``, ``<b>`` and ``<br>`` in labels, so every name a visitor chose (runs,
classes) is passed through :func:`studio.safe_text.html_escape` here, in the builders.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.safe_text import html_escape

PALETTE = px.colors.qualitative.Safe
SPLIT_COLOURS = {"train": "#0f766e", "val": "#f59e0b", "test": "#6366f1"}
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
_MARGIN = dict(l=10, r=10, t=50, b=10)
# Plotly's toolbar (modebar) floats over the top-right ~30 px of a chart: titles start at
# the left and sit below it, and subplot titles get a top margin that clears it.
TOP_WITH_TITLE = 64
TOP_WITH_SUBPLOT_TITLES = 72
CHAR_PX = 7  # width of one tick-label character, to decide when labels must turn
MIN_POINTS = 2  # a line chart of one point is a dot on a made-up axis; wait for the second


def _layout(fig: go.Figure, title: str | None = None, height: int = 360, top: int | None = None) -> go.Figure:
    margin = dict(_MARGIN, t=top or (TOP_WITH_TITLE if title else _MARGIN["t"]))
    fig.update_layout(title=None if title is None else dict(text=html_escape(title), x=0, xanchor="left",
                                                            xref="container", y=1, yanchor="top",
                                                            yref="container", pad=dict(t=10, l=10)),
                      height=height, margin=margin, legend_title_text="",
                      hovermode="closest", template="plotly_white")
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _legend_above(fig: go.Figure) -> None:
    """A legend between the title and the plot, clear of the tick labels below (which may
    be turned and long) and of the toolbar (the title's margin holds both)."""
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))


def value_range(values: Iterable[Any], from_zero: bool = True, pad: float = 0.08) -> list[float] | None:
    """An axis range that holds the finite values with a little room: from 0 (losses,
    learning rates) or from just under the smallest; None when there is no finite value.

    A single value gets room around it in proportion to its size, not Plotly's fixed
    ±0.75 (which turned one learning rate into an axis from -0.655 to 0.845).
    """
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return None
    lo, hi = (min(0.0, float(v.min())) if from_zero else float(v.min())), float(v.max())
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    return [lo if from_zero else lo - pad * span, hi + pad * span]


def tick_angle(labels: Sequence[Any], width_px: int = 420) -> int:
    """0 when the category labels fit side by side in ``width_px``, else -45, or -90 when
    the categories are too close even for slanted labels."""
    labels = [str(x) for x in labels]
    if not labels:
        return 0
    slot = width_px / len(labels)
    if max(len(x) for x in labels) * CHAR_PX <= slot * 0.9:
        return 0
    return -45 if slot >= 22 else -90


def _epoch_axis(fig: go.Figure, epochs: Sequence[Any], **where: Any) -> None:
    """Whole epochs on the x axis, from just before the first to just after the last
    (at least two epochs wide, so the first epoch's point is not alone at an edge)."""
    last = max([int(e) for e in epochs] or [1])
    fig.update_xaxes(title_text="epoch", range=[0.5, max(last, 2) + 0.5], dtick=1 if last <= 12 else None,
                     **where)


def class_balance(counts: pd.DataFrame) -> go.Figure:
    """Images per class and split (columns ``split``, ``class``, ``count``) as grouped bars."""
    df = counts.copy()
    df["split"] = df["split"].map(lambda s: SPLIT_NAMES.get(s, s))
    df["class"] = df["class"].map(html_escape)
    fig = px.bar(df, x="class", y="count", color="split", barmode="group", text="count",
                 color_discrete_map={SPLIT_NAMES[k]: v for k, v in SPLIT_COLOURS.items()},
                 labels={"class": "class", "count": "images", "split": "split"})
    fig.update_traces(textposition="outside", cliponaxis=False)
    fig.update_xaxes(tickangle=tick_angle(df["class"].unique(), 700))
    _legend_above(fig)
    return _layout(fig, "Images per class in each split", top=96)


def _epoch_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame([r for r in records if r.get("kind", "epoch") == "epoch"])
    if df.empty or "epoch" not in df:
        return pd.DataFrame(columns=["epoch"])
    return df.drop_duplicates("epoch", keep="last").sort_values("epoch")


def learning_curves(epochs: Sequence[Mapping[str, Any]], height: int = 300) -> go.Figure:
    """Loss, accuracy and AUC per epoch, training and validation side by side.

    Args:
        epochs: metrics.jsonl epoch records (``epoch``, ``train_loss``, ``val_loss``,
            ``train_acc``, ``val_acc``, ``train_auc``, ``val_auc``; any may be missing).
    """
    df = _epoch_frame(epochs)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Loss (lower is better)", "Accuracy", "AUC"),
                        horizontal_spacing=0.07)
    for col, metric in enumerate(("loss", "acc", "auc"), start=1):
        drawn = []
        for split, dash in (("train", "solid"), ("val", "dash")):
            key = f"{split}_{metric}"
            if key not in df or df[key].isna().all():
                continue
            drawn += df[key].tolist()
            fig.add_trace(go.Scatter(x=df["epoch"], y=df[key], mode="lines+markers", name=SPLIT_NAMES[split],
                                     legendgroup=split, showlegend=col == 1,
                                     line=dict(color=SPLIT_COLOURS[split], dash=dash)), row=1, col=col)
        _epoch_axis(fig, df["epoch"].tolist(), row=1, col=col)
        # Scores live in [0, 1]; a loss starts at 0: fixed ranges, so one epoch draws sensibly.
        fig.update_yaxes(range=value_range(drawn) if metric == "loss" else [0, 1.02], row=1, col=col)
    return _layout(fig, None, height, top=TOP_WITH_SUBPLOT_TITLES)


def overlaid_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, metric_label: str) -> go.Figure:
    """One line per run for one epoch metric (e.g. ``val_auc``)."""
    fig = go.Figure()
    for i, (label, records) in enumerate(curves.items()):
        df = _epoch_frame(records)
        if metric not in df or df[metric].isna().all():
            continue
        fig.add_trace(go.Scatter(x=df["epoch"], y=df[metric], mode="lines+markers", name=html_escape(label),
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    _epoch_axis(fig, [e for t in fig.data for e in t.x])
    values = [v for t in fig.data for v in t.y]
    fig.update_yaxes(title_text=metric_label,
                     range=value_range(values) if "loss" in metric else [0, 1.02])
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2))
    return _layout(fig, f"{metric_label} per epoch", 400)


def enough_steps(steps: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the step chart has a line to draw yet (:data:`MIN_POINTS` logged steps)."""
    return sum(1 for s in steps if s.get("kind", "step") == "step" and "step" in s) >= MIN_POINTS


def step_curves(steps: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Training loss (top) and learning rate (bottom) per logged step, each on its own axis
    with a range from 0 that fits its values (live feedback inside an epoch)."""
    df = pd.DataFrame([s for s in steps if s.get("kind", "step") == "step"])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12, row_heights=[0.62, 0.38],
                        subplot_titles=("Training loss", "Learning rate"))
    if not df.empty and "step" in df:
        if "loss" in df:
            fig.add_trace(go.Scatter(x=df["step"], y=df["loss"], mode="lines+markers" if len(df) < 20 else "lines",
                                     name="training loss", line=dict(color=SPLIT_COLOURS["train"])), row=1, col=1)
            fig.update_yaxes(range=value_range(df["loss"].tolist()), row=1, col=1)
        if "lr" in df:
            fig.add_trace(go.Scatter(x=df["step"], y=df["lr"], mode="lines", name="learning rate",
                                     line=dict(color="#64748b", dash="dot")), row=2, col=1)
            fig.update_yaxes(range=value_range(df["lr"].tolist()), row=2, col=1)
        fig.update_xaxes(range=value_range(df["step"].tolist(), from_zero=False, pad=0.02))
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="rate", exponentformat="e", row=2, col=1)
    fig.update_layout(showlegend=False)
    return _layout(fig, None, 340, top=TOP_WITH_SUBPLOT_TITLES)


def probability_bars(class_names: Sequence[str], probs: Sequence[float], title: str | None = None,
                     spread: Sequence[float] | None = None) -> go.Figure:
    """Horizontal bars of one image's probability per class, the winner highlighted.

    Args:
        class_names: one name per bar.
        probs: the probabilities (the mean over passes for Monte-Carlo dropout).
        title: optional chart title.
        spread: optional standard deviation per class, drawn as error bars and written
            beside the value ("62% ± 8%").
    """
    p = np.asarray(probs, dtype=float)
    top = int(p.argmax()) if p.size else -1
    colours = ["#0f766e" if i == top else "#94a3b8" for i in range(len(p))]
    if spread is None:
        text, error = [f"{v:.0%}" for v in p], None
    else:
        s = np.asarray(spread, dtype=float)
        text = [f"{v:.0%} ± {e:.0%}" for v, e in zip(p, s)]
        error = dict(type="data", array=s, color="#334155", thickness=1.5, width=4)
    fig = go.Figure(go.Bar(x=p, y=[html_escape(c) for c in class_names], orientation="h", marker_color=colours,
                           error_x=error, text=text, textposition="outside", cliponaxis=False))
    fig.update_xaxes(range=[0, 1.12], tickformat=".0%", title_text="probability")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, max(180, 40 + 34 * len(p)))


def roc_chart(curves: Sequence[Mapping[str, Any]]) -> go.Figure:
    """ROC curves on one chart; each item has ``label``, ``fpr``, ``tpr`` and ``auc``."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line=dict(color="#cbd5e1", dash="dot")))
    for i, c in enumerate(curves):
        auc = c.get("auc")
        label = html_escape(c["label"])
        name = f"{label} (AUC {auc:.3f})" if isinstance(auc, (int, float)) else label
        fig.add_trace(go.Scatter(x=c["fpr"], y=c["tpr"], mode="lines", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    fig.update_xaxes(title_text="false positive rate (1 - specificity)", range=[0, 1])
    fig.update_yaxes(title_text="true positive rate (sensitivity)", range=[0, 1.02])
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25))
    return _layout(fig, "ROC curves on the test split", 460)


def roc_default_class(curves_by_run: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[list[str], int]:
    """The classes the ROC picker offers and the one it starts on.

    It starts on a class that every run has a curve for (the positive class of a binary
    task where all runs are binary), so the first chart never leaves a selected run out.

    Args:
        curves_by_run: run label -> its ``eval.json`` ROC items (``class``, ``fpr``, ...).

    Returns:
        ``(classes, index of the default)``; classes in first-seen order, empty when none.
    """
    classes = list(dict.fromkeys(c["class"] for curves in curves_by_run.values() for c in curves))
    if not classes:
        return [], 0
    drawn = [{c["class"] for c in curves if c.get("fpr")} for curves in curves_by_run.values()]
    common = [c for c in classes if all(c in d for d in drawn)] if drawn else []
    binary = all(len(curves) == 2 for curves in curves_by_run.values())
    if binary:
        positives = [curves[1]["class"] for curves in curves_by_run.values()]
        if len(set(positives)) == 1 and positives[0] in common:
            return classes, classes.index(positives[0])
    return classes, classes.index(common[0]) if common else 0


def confusion_heatmap(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> go.Figure:
    """A confusion matrix (rows: true class, columns: predicted class) with counts in the cells."""
    m = np.asarray(matrix, dtype=float)
    names = [html_escape(c) for c in class_names]
    row_sums = m.sum(axis=1, keepdims=True)
    share = np.divide(m, row_sums, out=np.zeros_like(m), where=row_sums > 0)
    fig = go.Figure(go.Heatmap(z=share, x=names, y=names, colorscale="Teal", zmin=0, zmax=1,
                               text=m.astype(int), texttemplate="%{text}", showscale=False,
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images<extra></extra>"))
    fig.update_xaxes(title_text="predicted", side="bottom", tickangle=tick_angle(names))
    fig.update_yaxes(title_text="true", autorange="reversed")
    return _layout(fig, title, 260 + 22 * len(names))


def per_class_f1(rows: pd.DataFrame) -> go.Figure:
    """Grouped bars of F1 per class (columns ``run``, ``class``, ``f1``)."""
    rows = rows.assign(**{"class": rows["class"].map(html_escape), "run": rows["run"].map(html_escape)})
    fig = px.bar(rows, x="class", y="f1", color="run", barmode="group",
                 color_discrete_sequence=PALETTE, labels={"f1": "F1", "class": "class", "run": ""})
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(tickangle=tick_angle(rows["class"].unique(), 900))
    _legend_above(fig)
    return _layout(fig, "F1 per class on the test split", 420, top=110)


def scatter_runs(df: pd.DataFrame, x: str, y: str, x_label: str, y_label: str, log_x: bool = False,
                 highlight: Sequence[str] = ()) -> go.Figure:
    """One point per run (columns ``x``, ``y``, ``run``, ``model``); selected runs ringed."""
    data = df.dropna(subset=[x, y])
    data = data.assign(run=data["run"].map(html_escape), model=data["model"].map(html_escape))
    highlight = [html_escape(h) for h in highlight]
    fig = px.scatter(data, x=x, y=y, color="model", hover_name="run", log_x=log_x,
                     color_discrete_sequence=PALETTE, labels={x: x_label, y: y_label, "model": "model"})
    fig.update_traces(marker=dict(size=11, line=dict(width=1, color="white")))
    picked = data[data["run"].isin(list(highlight))]
    if not picked.empty:
        fig.add_trace(go.Scatter(x=picked[x], y=picked[y], mode="markers", name="selected",
                                 hoverinfo="skip",
                                 marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(width=2, color="#111827"))))
    return _layout(fig, f"{y_label} vs {x_label}", 380)


def reliability_chart(report: Mapping[str, Any], title: str) -> go.Figure:
    """A reliability diagram: accuracy against confidence per bin, before and after temperature.

    Args:
        report: :func:`core.calibration.calibration_report`'s result (``before``, ``after``
            or None, ``temperature``).
        title: the chart's title (the run's name).
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line=dict(color="#cbd5e1", dash="dot")))
    curves = [("before", f"as trained (ECE {report['before']['ece']:.3f})", "#f59e0b")]
    if report.get("after") is not None:
        curves.append(("after", f"temperature {report['temperature']:.2f} (ECE {report['after']['ece']:.3f})",
                       "#0f766e"))
    for key, name, colour in curves:
        d = report[key]
        keep = [i for i, n in enumerate(d["count"]) if n]
        fig.add_trace(go.Scatter(
            x=[d["confidence"][i] for i in keep], y=[d["accuracy"][i] for i in keep], mode="lines+markers",
            name=name, line=dict(color=colour), customdata=[d["count"][i] for i in keep],
            hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} predictions<extra></extra>"))
    fig.update_xaxes(title_text="confidence (top probability)", range=[0, 1.02])
    fig.update_yaxes(title_text="share correct", range=[0, 1.02])
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25))
    return _layout(fig, title, 400)
