"""A run's life: its statuses, its timestamps, and the sentences that say why it stopped.

``queued`` -> ``running`` -> ``completed`` | ``failed`` | ``cancelled`` | ``interrupted``;
``resume`` puts a final run back to ``queued``. The job runner claims and settles runs
(:mod:`core.runs.jobs`), the worker writes its own status (:mod:`core.runs.worker`), and a
store opened later settles a foreground run whose process died (:mod:`core.runs.reaper`).
This module only knows the words; it reads a run through :class:`core.runs.run.Run`'s
methods and imports nothing of the store.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
#: A run in one of these states has no worker and will not get one unless resumed.
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "interrupted"})


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC (these sort as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def last_completed_epoch(run: Any, meta: Mapping[str, Any] | None = None) -> int:
    """The last epoch the run finished: its last ``kind == "epoch"`` metrics line.

    meta.json's ``epoch`` is the epoch in progress while steps are logged, so it can be
    one ahead; ``epochs_done`` is used when there are no epoch lines.
    """
    epochs = [r.get("epoch") for r in run.metrics(kind="epoch")]
    epochs = [e for e in epochs if isinstance(e, int) and not isinstance(e, bool)]
    if epochs:
        return max(epochs)
    done = (meta or {}).get("epochs_done")
    return done if isinstance(done, int) and not isinstance(done, bool) else 0


def interrupted_reason(run: Any, meta: Mapping[str, Any], cause: str) -> str:
    """The ``error`` text of an interrupted run: after which epoch, why, and that it can be resumed.

    Args:
        run: the run (its metrics give the last finished epoch; its last checkpoint
            decides the advice).
        meta: its meta.json (``epochs`` = planned).
        cause: why it stopped, e.g. "its worker process was killed by signal 9".
    """
    epoch, epochs = last_completed_epoch(run, meta), meta.get("epochs")
    if epoch > 0:
        where = f"after epoch {epoch}" + (f" of {epochs}" if isinstance(epochs, int) else "")
    else:
        where = "before it finished its first epoch"
    todo = ("it can be resumed from its last checkpoint" if run.last_checkpoint.exists()
            else "it can be resumed, starting again from epoch 1")
    return f"Interrupted {where}: {cause}; {todo}."


def exit_cause(exit_code: int | None, after_restart: bool) -> str:
    """Why a run's worker ended without a final status, from its exit code.

    Args:
        exit_code: the worker's exit status (negative: killed by that signal), or None.
        after_restart: True when a restarted job runner found the worker gone.
    """
    if after_restart:
        return "its worker process was gone when the job runner restarted"
    if exit_code is not None and exit_code < 0:
        return f"its worker process was killed by signal {-exit_code}"
    if exit_code is not None:
        return f"its worker process exited with code {exit_code} without finishing (see worker.log)"
    return "its worker process ended without finishing"
