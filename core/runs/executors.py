"""Where workers run: the :class:`Executor` protocol, the local process executor, the
liveness test of a worker, and the CUDA slots workers share.

The job runner (:mod:`core.runs.jobs`) starts each run's worker through an executor;
:class:`LocalProcessExecutor` starts ``python -m core.runs.worker RUN_DIR`` as a local
process, and :class:`core.runs.ray_executor.RayExecutor` beside it does the same on a Ray
cluster. :func:`is_worker_alive` tells a live worker from a dead one or a reused pid, and
:func:`cuda_visible_for` / :func:`least_loaded_gpu` give each worker one GPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import psutil

from core.runs.lifecycle import utc_now
from core.runs.run import Run
from core.runs.worker_proof import valid_pid

# The job runner writes a token into meta.json when it claims a run and hands it to the
# worker in this variable; a worker started by hand cannot take over a run being launched.
LAUNCH_TOKEN_ENV = "STUDIO_LAUNCH_TOKEN"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@runtime_checkable
class Executor(Protocol):
    """Starts and stops workers. Other executors (Ray, torchrun) implement the same three calls.

    The worker they start is ``python -m core.runs.worker RUN_DIR`` (or calls
    ``core.runs.worker.main``) with ``$STUDIO_LAUNCH_TOKEN`` set to the run's
    ``launch_token`` from meta.json: without it the worker will not take a run the runner
    has claimed. ``start`` may also accept ``gpu=`` (the GPU slot the runner picked); the
    runner passes it only when there are GPUs to share out.

    Optional, used when present (see :class:`core.runs.ray_executor.RayExecutor`):
    ``exit_code(h)``, ``kill(h)``, ``failure(h)`` (a sentence: the run fails with it),
    ``end_cause(h)`` (why a run left running was interrupted), ``adopt(run)`` (the handle
    of a worker an earlier runner started, or None), ``capacity()`` (runs at once, when
    the executor's cluster decides) and ``uses_local_gpus = False`` (no GPU slots).
    """

    name: str

    def start(self, run: Run) -> Any:
        """Start the worker for ``run``; returns a handle the other two methods take."""

    def is_alive(self, handle: Any) -> bool:
        """True while the worker has not ended."""

    def terminate(self, handle: Any) -> None:
        """Ask the worker to stop (SIGTERM or the executor's equivalent)."""


class LocalProcessExecutor:
    """Runs each worker as a new local process in its own session.

    Args:
        command: the command before the run directory; defaults to
            ``[sys.executable, "-m", "core.runs.worker"]`` (tests pass a fake worker).
        env: extra environment variables for the worker.
    """

    name = "local"

    def __init__(self, command: Sequence[str] | None = None, env: Mapping[str, str] | None = None):
        self.command = list(command) if command else [sys.executable, "-m", "core.runs.worker"]
        self.env = dict(env or {})

    def start(self, run: Run, gpu: int | None = None) -> subprocess.Popen:
        """Start ``command + [run_dir]`` with stdout and stderr appended to ``worker.log``.

        Args:
            run: the run.
            gpu: a GPU slot; the worker then sees only that device (CUDA_VISIBLE_DEVICES).

        Returns:
            The ``Popen`` object.
        """
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        # The worker imports ``core`` whatever the server's working directory is.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda_visible_for(gpu, os.environ.get("CUDA_VISIBLE_DEVICES"))
        token = run.meta().get("launch_token")
        if isinstance(token, str):
            env[LAUNCH_TOKEN_ENV] = token
        # worker.log is an append-only stream (like metrics.jsonl), not an atomic file.
        with open(run.log_path, "ab") as log:
            log.write(f"--- {utc_now()} starting {' '.join(self.command)} {run.dir}\n".encode())
            log.flush()
            return subprocess.Popen(
                [*self.command, str(run.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True,
            )

    def is_alive(self, handle: subprocess.Popen) -> bool:
        return handle.poll() is None  # also reaps it, so no zombie is left

    def exit_code(self, handle: subprocess.Popen) -> int | None:
        """The worker's exit status; negative for a signal; None while it runs."""
        return handle.poll()

    def terminate(self, handle: subprocess.Popen) -> None:
        self._signal(handle, signal.SIGTERM)

    def kill(self, handle: subprocess.Popen) -> None:
        """SIGKILL, for a worker that ignored SIGTERM."""
        self._signal(handle, signal.SIGKILL)

    @staticmethod
    def _signal(handle: subprocess.Popen, sig: int) -> None:
        if handle.poll() is not None:
            return
        try:
            os.killpg(handle.pid, sig)  # the whole session: DataLoader workers too
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover
            handle.send_signal(sig)


def cuda_visible_for(slot: int, visible: str | None) -> str:
    """The CUDA_VISIBLE_DEVICES value giving a worker GPU number ``slot`` of those the server sees.

    Args:
        slot: 0-based index among the server's visible GPUs.
        visible: the server's own CUDA_VISIBLE_DEVICES, or None for all.

    Returns:
        One device id (``"2"``, or a UUID when that is what the server's list holds).
    """
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    return devices[slot % len(devices)] if devices else str(slot)


def local_gpu_count() -> int:
    """How many CUDA GPUs this machine's workers can share (0 with ``STUDIO_DEVICE=cpu``).

    Imports torch, so the job runner asks only when it first needs to know.
    """
    if os.environ.get("STUDIO_DEVICE", "").lower() == "cpu":
        return 0
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        pass
    return 0


def least_loaded_gpu(gpus: int, active: Mapping[str, int | None]) -> int | None:
    """The GPU slot with the fewest running workers (the lowest on a tie), or None without GPUs.

    Args:
        gpus: how many GPUs there are.
        active: run id -> the slot its worker has (None: no GPU).
    """
    if gpus < 1:
        return None
    load = [0] * gpus
    for gpu in active.values():
        if gpu is not None and 0 <= gpu < gpus:
            load[gpu] += 1
    return load.index(min(load))


def is_worker_alive(pid: int, run: Run, created: float | None = None) -> bool:
    """True when ``pid`` is a live process working on ``run`` (not a zombie, not a reused pid).

    Args:
        pid: the worker's pid from meta.json.
        run: the run.
        created: the process start time the worker recorded (``pid_created``); when
            absent, the process must have the run id on its command line instead.

    A pid no process can have (-1, 0, text, 10**30: a hand-edited meta.json) is a dead
    worker, never an exception: the runner must start whatever one run's file says.
    """
    if valid_pid(pid) is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if created is not None:
            return abs(proc.create_time() - created) < 0.5
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, ValueError, OverflowError):
        return False
    except psutil.AccessDenied:  # pragma: no cover - it exists but we may not look
        return True
    except (psutil.Error, OSError):  # pragma: no cover - anything else psutil raises: not provably alive
        return False
    return any(run.id in arg for arg in cmdline)  # our workers get the run dir as argument
