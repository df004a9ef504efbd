"""The Train page's time-per-epoch estimate, without holding the page back.

Timing a few training steps takes up to ~10 s on a busy CPU, and the Start button sat
below it. Now the estimate comes, in this order, from:

1. the last finished run of the same architecture, image size, batch and device (what
   training really cost here, scaled to this dataset's number of images), or
2. a measurement in a background thread: a few steps of the real trainer
   (:func:`core.train.step_timer.measure_train_step`, which the pages reach as
   ``ui.measure_train_step``), shown when it is ready; meanwhile the card says it is
   being measured.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import streamlit as st

from studio import ui
from studio.safe_text import md_escape

RECENT_RUNS = 20  # finished runs of the model looked at for a match


@dataclass(frozen=True)
class Estimate:
    """Seconds per epoch and where the figure comes from (a sentence for the caption)."""

    epoch_seconds: float
    source: str


class _Timer:
    """One background thread timing training steps; results kept per setting."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="step-timer")
        self.jobs: dict[tuple, Future] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple) -> tuple[float, float] | None:
        """The measured (fixed, per image) cost, or None while it is being measured."""
        with self.lock:
            job = self.jobs.get(key)
            if job is None:
                # ui.measure_train_step is looked up when the job runs (tests replace it).
                job = self.jobs[key] = self.pool.submit(lambda: ui.measure_train_step(*key))
        if not job.done():
            return None
        return job.result()  # a failed measurement raises here, inside the page's guard

    def clear(self) -> None:
        with self.lock:
            self.jobs.clear()


@st.cache_resource(show_spinner=False)
def timer() -> _Timer:
    """The process's step timer (shared by sessions: the same setting is timed once)."""
    return _Timer()


def from_last_run(model: str, size: int, batch: int, device: str, n_train: int) -> Estimate | None:
    """Seconds per epoch from the newest finished run with the same architecture, image
    size, batch size and device, scaled to ``n_train`` training images; None if none."""
    if n_train <= 0:
        return None
    store = ui.store()
    for row in store.list_runs(model=model, status="completed")[:RECENT_RUNS]:
        if row.get("image_size") != size:
            continue
        try:
            run = store.get(row["run_id"])
            meta, params = run.meta(), run.params() or {}
        except Exception:  # noqa: BLE001 - a damaged run is simply not a yardstick
            continue
        used = (meta.get("batch_plan") or {}).get("batch_size") or (params.get("config") or {}).get("batch_size")
        seconds, epochs, images = meta.get("train_seconds"), meta.get("epochs_done"), meta.get("n_train")
        if used != batch or str(meta.get("device")) != device:
            continue
        if not all(isinstance(v, (int, float)) and v > 0 for v in (seconds, epochs, images)):
            continue
        per_epoch = seconds / epochs * (n_train / images)
        return Estimate(per_epoch, f"From your run “{row.get('name') or row['run_id']}” of {model} at {size} px, "
                                   f"which took {ui.fmt_duration(seconds / epochs)} an epoch on {images:,} images.")
    return None


def estimate(model: str, size: int, facts: dict[str, Any], batch: int, device: str) -> Estimate | None:
    """The time per epoch for the Train page's card: from the last similar run, else the
    background measurement; None while that is still running (ask again later)."""
    found = from_last_run(model, size, batch, device, int(facts.get("n_train") or 0))
    if found is not None:
        return found
    cost = timer().get((model, size, facts["channels"], facts["num_classes"], batch, device))
    if cost is None:
        return None
    return Estimate(ui.epoch_seconds(cost, batch, facts["n_train"], facts["n_val"]),
                    f"Measured with a few training steps on {ui.device_label()}, for {facts['n_train']:,} "
                    "training images; other work on the machine slows them down.")


def estimate_lines(head: str, model: str, size: int, facts: dict[str, Any], batch: int, epochs: int,
                   device: str) -> None:
    """The card's "Time per epoch" and "N epochs" lines under ``head`` (markdown): at once
    when the figure is known, else from a fragment that checks every second."""
    found = estimate(model, size, facts, batch, device)
    if found is not None:
        _show(head, found, epochs)
    else:
        _wait_for_estimate(head, model, size, facts, batch, epochs, device)


def _show(head: str, found: Estimate | None, epochs: int) -> None:
    per_epoch = ui.fmt_estimate(found.epoch_seconds) if found else "being measured..."
    total = ui.fmt_estimate(found.epoch_seconds * epochs) if found else "being measured..."
    st.markdown(f"{head}- **Time per epoch:** {per_epoch}\n"
                f"- **{epochs} epoch{'s' if epochs != 1 else ''}:** {total}")
    if found:
        st.caption(md_escape(found.source))
    else:
        st.caption("Timing a few training steps in the background; you can start training meanwhile.")


@st.fragment(run_every=1.0)
def _wait_for_estimate(head: str, model: str, size: int, facts: dict[str, Any], batch: int, epochs: int,
                       device: str) -> None:
    """While the measurement runs, the lines say so; once it is ready they show it. Only
    this fragment reruns: a whole-page rerun here could land while the person is typing in
    a field and reset what they typed (the browser walk once lost its "1" in Epochs)."""
    with ui.guard("timing the training steps", "pick another architecture or image size"):
        _show(head, estimate(model, size, facts, batch, device), epochs)
