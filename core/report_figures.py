"""The report's pictures as PNG bytes: curves, confusion matrix, reliability diagram, heatmaps.

Drawn with matplotlib's object API (a ``Figure`` with its own Agg canvas, never pyplot), so
reports can be built from several Streamlit sessions' threads at once without sharing state.
Maths parsing is off: a class named ``$x$`` is drawn as those three characters.
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np

SPLIT_COLOURS = {"train": "#0f766e", "val": "#f59e0b"}
PALETTE = ["#0f766e", "#f59e0b", "#6366f1", "#e11d48", "#0ea5e9", "#84cc16", "#a855f7", "#64748b"]
_RC = {"text.parse_math": False, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(fig) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        # "tight" keeps long class names and axis titles inside the picture.
        fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.08)
    return buf.getvalue()


def _epochs(records: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """Epoch records by epoch (a resumed run logs an epoch again: the last one counts)."""
    out: dict[int, Mapping[str, Any]] = {}
    for r in records:
        if r.get("kind", "epoch") == "epoch" and isinstance(r.get("epoch"), (int, float)):
            out[int(r["epoch"])] = r
    return dict(sorted(out.items()))


def _series(by_epoch: Mapping[int, Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for e, r in by_epoch.items():
        v = r.get(key)
        if isinstance(v, (int, float)) and np.isfinite(v):
            xs.append(e)
            ys.append(float(v))
    return xs, ys


def learning_curves_png(records: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Loss, accuracy and AUC per epoch, training and validation; None without epoch records.

    Args:
        records: the run's metrics.jsonl epoch records.

    Returns:
        PNG bytes, or None when no epoch was logged.
    """
    import matplotlib

    by_epoch = _epochs(records)
    if not by_epoch:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(8.0, 2.6)
        axes = fig.subplots(1, 3)
        for ax, (metric, title) in zip(axes, (("loss", "Loss (lower is better)"), ("acc", "Accuracy"),
                                               ("auc", "AUC"))):
            for split, name in (("train", "training"), ("val", "validation")):
                xs, ys = _series(by_epoch, f"{split}_{metric}")
                if xs:
                    ax.plot(xs, ys, marker="o", ms=3, color=SPLIT_COLOURS[split], label=name,
                            ls="-" if split == "train" else "--")
            ax.set_title(title)
            _epoch_axis(ax, list(by_epoch))
        axes[0].legend(loc="best", fontsize=8)
        return _png(fig)


def overlaid_curves_png(curves: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, label: str) -> bytes | None:
    """One line per run for one epoch metric; None when no run logged it.

    Args:
        curves: run label -> its epoch records.
        metric: e.g. ``"val_acc"``.
        label: the metric in words, for the axis.

    Returns:
        PNG bytes or None.
    """
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(7.0, 3.0)
        ax = fig.subplots()
        seen: list[int] = []
        for i, (name, records) in enumerate(curves.items()):
            xs, ys = _series(_epochs(records), metric)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, color=PALETTE[i % len(PALETTE)], label=name)
                seen += xs
        if not seen:
            return None
        _epoch_axis(ax, seen)
        ax.set_ylabel(label)
        ax.legend(loc="best", fontsize=7)
        return _png(fig)


def _epoch_axis(ax, epochs: Sequence[int]) -> None:
    """Whole epochs on the x axis (one epoch would otherwise get ticks 0.95 ... 1.05)."""
    from matplotlib.ticker import MaxNLocator

    if epochs:
        lo, hi = min(epochs), max(epochs)
        ax.set_xlim(lo - 0.5, hi + 0.5)
        if hi - lo <= 12:
            ax.set_xticks(range(lo, hi + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def confusion_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> bytes:
    """A confusion matrix with counts in the cells, coloured by the share of each true class.

    Args:
        matrix: K x K counts, rows = true class, columns = predicted class.
        class_names: the K names.

    Returns:
        PNG bytes.
    """
    import matplotlib

    m = np.asarray(matrix, dtype=float)
    k = len(class_names)
    names = [_short(c) for c in class_names]
    share = np.divide(m, m.sum(axis=1, keepdims=True), out=np.zeros_like(m), where=m.sum(axis=1, keepdims=True) > 0)
    side = min(2.2 + 0.45 * k, 7.5)
    with matplotlib.rc_context(_RC):
        fig = _figure(side + 0.8, side)
        ax = fig.subplots()
        ax.imshow(share, cmap="GnBu", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8 if k < 10 else 6,
                        color="white" if share[i, j] > 0.6 else "#111827")
        ax.set_xticks(range(k), names, rotation=35 if k > 2 else 0, ha="right" if k > 2 else "center")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("model's answer")
        ax.set_ylabel("true class")
        return _png(fig)


def reliability_png(report: Mapping[str, Any]) -> bytes:
    """A reliability diagram: share correct against confidence, before and after temperature.

    Args:
        report: :func:`core.calibration.calibration_report`'s result, or ``{"before":
            reliability_diagram(...), "after": None}``.

    Returns:
        PNG bytes.
    """
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(4.2, 3.4)
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], ls=":", color="#94a3b8", label="perfectly calibrated")
        curves = [("before", f"as trained (ECE {report['before']['ece']:.3f})", "#f59e0b")]
        if report.get("after"):
            curves.append(("after", f"temperature {report['temperature']:.2f} (ECE {report['after']['ece']:.3f})",
                           "#0f766e"))
        for key, name, colour in curves:
            d = report[key]
            keep = [i for i, n in enumerate(d["count"]) if n]
            ax.plot([d["confidence"][i] for i in keep], [d["accuracy"][i] for i in keep], marker="o", ms=3,
                    color=colour, label=name)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("share correct")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
        return _png(fig)


def image_pair_png(image, overlaid, side: int = 160) -> bytes:
    """An image and its heatmap overlay side by side, scaled up (nearest neighbour) to ``side``.

    Args:
        image: the image as an RGB PIL image.
        overlaid: the overlay (PIL image of the same size).
        side: the height in pixels of each half.

    Returns:
        PNG bytes.
    """
    from PIL import Image

    a = image.convert("RGB").resize((side, side), Image.Resampling.NEAREST)
    b = overlaid.convert("RGB").resize((side, side), Image.Resampling.NEAREST)
    out = Image.new("RGB", (2 * side + 6, side), "white")
    out.paste(a, (0, 0))
    out.paste(b, (side + 6, 0))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def _short(name: Any, limit: int = 18) -> str:
    text = " ".join(str(name).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
