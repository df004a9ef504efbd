"""Runs whose training process died without a word: found when the store is opened.

A worker writes its final status itself, and the job runner settles the workers it
watches. Nobody watches a foreground ``python -m core train``: killed by SIGKILL (what the
kernel's out-of-memory killer sends) it leaves ``status: running`` behind for ever, and
``resume`` refuses a running run. So every :class:`core.runs.store.RunStore` looks, when
it is opened, for running runs of this host whose recorded process is provably gone, and
marks them ``interrupted`` (resumable) with the reason.

"Provably gone" is stricter than the job runner's liveness test: the pid does not exist,
is a zombie, or now belongs to a process started at another time than the one recorded
(``pid_created``: pids are reused). A live process without a recorded start time, and a
run without a pid yet (a job runner is launching its worker), are left to the runner.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import psutil

from core.errors import StudioError
from core.runs.lifecycle import interrupted_reason, utc_now

logger = logging.getLogger(__name__)

HOST = socket.gethostname()
# psutil's create_time is rounded differently from one call to the next; a reused pid
# starts seconds (usually much more) after the process that recorded it.
_SAME_START_S = 0.5


def process_is_gone(pid: Any, created: Any) -> bool:
    """True only when ``pid`` is certainly not the process that recorded itself.

    Args:
        pid: the pid from meta.json (anything: a hand edit may put text or -1 there).
        created: the process start time recorded with it (``pid_created``), or None.

    Returns:
        True for a pid that is not a positive whole number, does not exist, is a zombie,
        or was started at another time than ``created``; False otherwise (alive, or
        nothing to prove it is not).
    """
    if pid is None:
        return False  # being launched: the job runner's launch grace decides
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return True  # no process can carry it
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        if isinstance(created, (int, float)) and not isinstance(created, bool):
            return abs(proc.create_time() - float(created)) >= _SAME_START_S
        return False
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except (psutil.AccessDenied, OverflowError, ValueError):  # another user's process, a pid beyond the OS's range
        return False


def interrupt_dead_runs(store: Any) -> list[str]:
    """Mark ``interrupted`` every running run of this host whose process is provably gone.

    Args:
        store: the :class:`core.runs.store.RunStore` being opened.

    Returns:
        The ids of the runs marked.
    """
    marked = []
    for row in store.list_runs(status="running", order_by="created", descending=False):
        run_id = row["run_id"]
        try:
            run = store.get(run_id)
            meta = run.meta()
        except StudioError:
            continue  # deleted meanwhile, or its meta.json is damaged (listed as such)
        pid, created = meta.get("pid"), meta.get("pid_created")
        if (meta.get("status") != "running" or meta.get("host") not in (None, HOST)
                or not process_is_gone(pid, created)):
            continue
        cause = (f"the process training it (pid {pid}) ended without recording a final status "
                 "(it was killed, for example by the system when memory ran out)")

        def still_that_process(current: dict, pid: Any = pid, created: Any = created) -> bool:
            # Checked under the run's lock: a resume may have claimed it since we looked.
            return (current.get("status") == "running" and current.get("pid") == pid
                    and current.get("pid_created") == created)

        fields = ({"status": "cancelled", "finished": utc_now()} if run.cancel_requested() else
                  {"status": "interrupted", "finished": utc_now(), "error": interrupted_reason(run, meta, cause)})
        if store.update_meta_if(run_id, still_that_process, **fields) is not None:
            logger.warning("run %s: %s; marked %s", run_id, cause, fields["status"])
            marked.append(run_id)
    return marked
