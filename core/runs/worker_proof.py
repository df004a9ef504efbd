"""Which process the job runner may signal: only one proven to be the run's own worker.

meta.json is a file anyone with access to the runs directory can edit, and pids are reused.
A ``status: running`` with the pid (and start time) of an unrelated process must not make a
cancel SIGTERM that process, and a pid of -1 or 0 (``kill(-1)`` signals every process the
server may signal, ``killpg(0)`` the server's own group) must never reach ``os.kill``. So
before a signal the process has to show three things that meta.json alone cannot fake:

1. its command line runs the worker (the executor's worker command, ``-m core.runs.worker``
   by default) with this run's directory as an argument;
2. its environment carries the run's launch token (``$STUDIO_LAUNCH_TOKEN``, which the job
   runner generated for this launch and recorded as ``worker_token``);
3. it started when the worker recorded (``pid_created``), when that was recorded.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import psutil

logger = logging.getLogger(__name__)

#: The part of the default worker command that names it (after the interpreter).
WORKER_MODULE_ARGS = ("-m", "core.runs.worker")
# psutil's create_time is rounded differently from one call to the next.
_SAME_START_S = 0.5


def valid_pid(value: Any) -> int | None:
    """``value`` as a pid a process can have, else None.

    Args:
        value: the ``pid`` of meta.json (a hand edit may put -1, 0, text or 10**30 there).

    Returns:
        A positive whole number (not a bool), or None.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value >= 2**31:
        return None
    return value


def worker_marker(command: Sequence[str] | None) -> tuple[str, ...]:
    """The arguments that name the worker on a command line started with ``command``.

    Args:
        command: the executor's worker command (``[python, "-m", "core.runs.worker"]``,
            or a test's fake worker script); None for the default.

    Returns:
        The command without its interpreter (the interpreter's path varies: venvs, symlinks).
    """
    if not command:
        return WORKER_MODULE_ARGS
    rest = tuple(str(c) for c in command[1:])
    return rest or (os.path.basename(str(command[0])),)


def is_proven_worker(pid: Any, run_dir: str | os.PathLike, token: Any, command: Sequence[str] | None = None,
                     created: float | None = None, token_env: str = "STUDIO_LAUNCH_TOKEN") -> bool:
    """True only when ``pid`` is a live process proven to be ``run_dir``'s worker.

    Args:
        pid: the pid from meta.json (anything).
        run_dir: the run's directory.
        token: the launch token recorded for the worker (``worker_token``); a worker
            without one (started by hand, or in-process by the command line) is never proven.
        command: the executor's worker command (see :func:`worker_marker`).
        created: the start time the worker recorded (``pid_created``), if any.
        token_env: the environment variable the token travels in.

    Returns:
        True when the command line names the worker and the run directory, the environment
        carries the token and the start time matches; False otherwise, including when the
        process is gone, a zombie, or may not be inspected.
    """
    pid = valid_pid(pid)
    if pid is None or not isinstance(token, str) or not token:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if created is not None and abs(proc.create_time() - float(created)) >= _SAME_START_S:
            return False
        cmdline = [str(a) for a in proc.cmdline()]
        environ = proc.environ()
    except (psutil.Error, OSError, ValueError, OverflowError):
        return False  # gone, a zombie, another user's process: not proven
    marker = worker_marker(command)
    if not _contains(cmdline, marker):
        return False
    target = os.path.realpath(run_dir)
    if not any(os.path.realpath(arg) == target for arg in cmdline if arg and not arg.startswith("-")):
        return False
    return environ.get(token_env) == token


def _contains(args: Sequence[str], part: Sequence[str]) -> bool:
    n = len(part)
    return any(tuple(args[i:i + n]) == tuple(part) for i in range(len(args) - n + 1))
