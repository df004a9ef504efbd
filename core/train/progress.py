"""What a person reads about a run's progress: how long it has left, and why it stopped.

The trainer knows two clocks: the epochs still to go, and the time limit (``max_minutes``).
An estimate from the epochs alone over-promises a run that the time limit will end early
(it said "about 2 min 58 s left" 66 s into a 2-minute run), so :func:`time_left` takes the
sooner of the two, following the rule :class:`core.train.callbacks.TimeBudget` stops by.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# How a run ended; the trainer's callbacks set the first three, the last is the default.
STOP_KINDS = ("time_limit", "early_stopping", "cancelled", "completed")
# TimeBudget stops when another epoch would overrun the budget by more than this share.
BUDGET_SLACK = 1.02

_MONITOR_WORDS = {"val_auc": "validation AUC", "val_acc": "validation accuracy", "val_loss": "validation loss",
                  "train_loss": "training loss"}


def time_left(fraction: float, fraction_at_start: float, elapsed_s: float, epochs: int,
              budget_s: float | None = None, spent_s: float | None = None) -> float | None:
    """Seconds until training ends: the epochs still to go, or the time limit if sooner.

    Args:
        fraction: share of all epochs done (0..1), counting epochs done before a resume.
        fraction_at_start: the share already done when this process started (resume).
        elapsed_s: seconds this process has been training.
        epochs: the planned number of epochs.
        budget_s: the time limit in seconds, None or 0 for none.
        spent_s: seconds spent under the time limit so far (including before a resume);
            ``elapsed_s`` when None.

    Returns:
        The estimate (>= 0), or None while too little is done to estimate from.
    """
    done_here = fraction - fraction_at_start
    if done_here <= 1e-6 or elapsed_s <= 0 or epochs <= 0:
        return None
    per_epoch = elapsed_s / (done_here * epochs)
    by_epochs = per_epoch * (1.0 - fraction) * epochs
    if not budget_s:
        return max(0.0, by_epochs)
    spent = elapsed_s if spent_s is None else spent_s
    # The current epoch always finishes; after each epoch the budget rule decides whether
    # another one starts (spent + one more epoch must stay within the budget).
    epochs_done = fraction * epochs
    whole = math.ceil(epochs_done - 1e-9)
    clock = spent + (whole - epochs_done) * per_epoch
    for _ in range(max(0, epochs - whole)):
        if clock + per_epoch > budget_s * BUDGET_SLACK:
            break
        clock += per_epoch
    return max(0.0, min(by_epochs, clock - spent))


def stop_record(status: str, epochs_done: int, epochs: int, kind: str | None = None, *,
                max_minutes: float = 0.0, patience: int = 0, monitor: str | None = None,
                best_epoch: int | None = None) -> dict[str, Any]:
    """Why a run ended, as plain values for meta.json (``meta["stop"]``).

    Args:
        status: the fit's result, ``completed`` or ``cancelled``.
        epochs_done: the last epoch finished.
        epochs: the planned number of epochs.
        kind: what the trainer's callbacks said (``time_limit``, ``early_stopping``,
            ``cancelled``), None when nothing stopped it early.
        max_minutes, patience, monitor: the settings behind a time-limit or early stop.
        best_epoch: the epoch whose weights are kept.

    Returns:
        ``{"kind", "epoch", "epochs", "best_epoch"}`` plus ``limit_minutes`` or
        ``patience`` and ``monitor`` where they explain the stop.
    """
    if status == "cancelled":
        kind = "cancelled"
    elif kind not in STOP_KINDS or (kind != "completed" and epochs_done >= epochs):
        # A limit reached in the very last epoch still ran every epoch.
        kind = "completed"
    record: dict[str, Any] = {"kind": kind, "epoch": int(epochs_done), "epochs": int(epochs),
                              "best_epoch": best_epoch}
    if kind == "time_limit":
        record["limit_minutes"] = float(max_minutes)
    if kind == "early_stopping":
        record.update(patience=int(patience), monitor=monitor)
    return record


def fmt_minutes(minutes: float) -> str:
    """``2 min``, ``30 s``, ``1 h 30 min``, ``2.5 min``: a time limit in words."""
    seconds = float(minutes) * 60
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        m = seconds / 60
        return f"{m:.0f} min" if abs(m - round(m)) < 0.05 else f"{m:.1f} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h" + (f" {m} min" if m else "")


def why_stopped(meta: Mapping[str, Any]) -> str | None:
    """One sentence on why a finished or cancelled run stopped.

    Reads ``meta["stop"]`` (:func:`stop_record`); runs from before it was recorded fall
    back on ``stop_reason``, ``epochs_done`` and ``epochs``.

    Args:
        meta: a run's meta.json.

    Returns:
        E.g. "Stopped at epoch 6 of 10: time limit of 2 min.", or None when nothing says.
    """
    stop = meta.get("stop") if isinstance(meta.get("stop"), Mapping) else None
    epochs = _int(meta.get("epochs"))
    done = _int(meta.get("epochs_done"))
    if stop is None:
        reason = str(meta.get("stop_reason") or "")
        kind = ("cancelled" if meta.get("status") == "cancelled" or reason.startswith("cancelled")
                else "time_limit" if reason.startswith("time budget")
                else "early_stopping" if reason.startswith("early stopping")
                else "completed" if meta.get("status") == "completed" and done and epochs and done >= epochs
                else None)
        if kind is None:
            return None
        stop = {"kind": kind, "epoch": done, "epochs": epochs, "best_epoch": meta.get("best_epoch")}
    kind = stop.get("kind")
    epoch, planned = _int(stop.get("epoch")), _int(stop.get("epochs"))
    where = f"epoch {epoch} of {planned}" if epoch is not None and planned else (
        f"epoch {epoch}" if epoch is not None else "")
    best = _int(stop.get("best_epoch"))
    kept = f" The weights of epoch {best}, the best one, are kept." if best and best != epoch else ""
    if kind == "completed":
        if planned:
            return (f"Ran all {planned} epochs." if planned != 1 else "Ran its one epoch.") + kept
        return "Ran every planned epoch." + kept
    if kind == "cancelled":
        if not epoch:
            return "Cancelled before its first epoch finished."
        return f"Cancelled after {where}.{kept}"
    if kind == "time_limit":
        limit = stop.get("limit_minutes")
        limit_text = f"time limit of {fmt_minutes(limit)}" if isinstance(limit, (int, float)) and limit else \
            "the time limit"
        return f"Stopped at {where}: {limit_text}.{kept}"
    if kind == "early_stopping":
        patience = _int(stop.get("patience"))
        what = _MONITOR_WORDS.get(str(stop.get("monitor")), "the validation score")
        since = f" for {patience} epoch{'s' if patience != 1 else ''}" if patience else ""
        return f"Stopped at {where}: early stopping, {what} had not improved{since}.{kept}"
    return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None
