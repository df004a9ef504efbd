"""The job runner: starts one worker process per run, a few at a time, and watches them.

Training never runs in the Streamlit server. A page calls :meth:`JobRunner.submit`; the
runner queues the run and, when a slot is free, asks its :class:`Executor` to start a
worker (``python -m core.runs.worker RUN_DIR``). The worker writes its own status into
the run store; the runner only reconciles: a worker that vanished without writing a
final status leaves an ``interrupted`` run, with a reason, that can be resumed.

Workers run in their own session, so they outlive a restarted server; the next runner
adopts them (counts them against the concurrency limit) instead of starting more.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import psutil

from core.errors import StudioError
from core.limits import current_limits
from core.runs.owners import authorize
from core.runs.store import FINAL_STATUSES, Run, RunStore, interrupted_reason, utc_now
from core.runs.worker_proof import is_proven_worker, valid_pid

logger = logging.getLogger(__name__)

HOST = socket.gethostname()
# How long a run may sit "running" without a pid while its worker is being launched.
LAUNCH_GRACE_S = 30.0
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


EXECUTOR_ENV = "STUDIO_EXECUTOR"


def make_executor(name: str | None = None, address: str | None = None) -> Executor:
    """The executor named by ``name`` or ``$STUDIO_EXECUTOR``: ``local`` (default) or ``ray``.

    Args:
        name: ``local`` or ``ray``; None reads ``$STUDIO_EXECUTOR``.
        address: the Ray cluster (None: ``$RAY_ADDRESS``).

    Raises:
        StudioError: an unknown name, or Ray missing or unreachable.
    """
    chosen = (name or os.environ.get(EXECUTOR_ENV) or "local").strip().lower()
    if chosen == "local":
        return LocalProcessExecutor()
    if chosen == "ray":
        from core.runs.ray_executor import RayExecutor

        return RayExecutor(address)
    raise StudioError(f"executor '{chosen}' is not known; set {EXECUTOR_ENV} (or --executor) to local or ray")


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


@dataclass
class _Job:
    handle: Any
    gpu: int | None


@dataclass
class _Cancel:
    requested_at: float
    terminated_at: float | None = None
    killed: bool = False


class JobRunner:
    """Queues runs and runs them in worker processes, at most ``max_concurrent`` at a time.

    Construction reconciles what a previous runner left behind (:meth:`recover`). Call
    :meth:`start` for a background thread that polls every ``poll_interval`` seconds, or
    call :meth:`poll` yourself. Thread-safe.

    Args:
        store: the run store.
        executor: how workers are started; defaults to :func:`make_executor` (``$STUDIO_EXECUTOR``).
        max_concurrent: how many runs may train at once; default 1 on CPU, one per GPU
            when CUDA is there (decided on first use, so torch is imported only then).
        cancel_grace: seconds a running worker gets to stop by itself after a cancel
            (from this runner or any other process, e.g. ``python -m core cancel``)
            before it is terminated.
        kill_grace: seconds after terminate before it is killed.
        poll_interval: seconds between background polls.
        start_thread: start the background polling thread now (same as :meth:`start`).
    """

    def __init__(
        self,
        store: RunStore,
        executor: Executor | None = None,
        max_concurrent: int | None = None,
        *,
        cancel_grace: float = 10.0,
        kill_grace: float = 5.0,
        poll_interval: float = 0.5,
        start_thread: bool = False,
    ):
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.store = store
        self.executor = executor or make_executor()
        self.cancel_grace = cancel_grace
        self.kill_grace = kill_grace
        self.poll_interval = poll_interval
        self._max_concurrent = max_concurrent
        self._gpus: int | None = None
        self._jobs: dict[str, _Job] = {}
        self._cancels: dict[str, _Cancel] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recover()
        if start_thread:
            self.start()

    # -- capacity ----------------------------------------------------------------------
    @property
    def max_concurrent(self) -> int:
        """How many runs may train at once."""
        capacity = getattr(self.executor, "capacity", None)
        if self._max_concurrent is None and capacity is not None:
            return capacity()  # a cluster's size, asked again as it grows or shrinks
        if self._max_concurrent is None:
            self._max_concurrent = max(1, self._gpu_count())
        return self._max_concurrent

    def _gpu_count(self) -> int:
        if self._gpus is None:
            self._gpus = 0
            if os.environ.get("STUDIO_DEVICE", "").lower() != "cpu":
                try:
                    import torch

                    if torch.cuda.is_available():
                        self._gpus = torch.cuda.device_count()
                except ImportError:  # pragma: no cover
                    pass
        return self._gpus

    # -- public calls -----------------------------------------------------------------------
    def submit(self, params: Mapping[str, Any], name: str | None = None, owner: str | None = None) -> str:
        """Create a queued run and schedule it (see :meth:`submit_many`).

        Returns:
            The run id.
        """
        return self.submit_many([(params, name)], owner=owner)[0]

    def submit_many(self, jobs: Sequence[tuple[Mapping[str, Any], str | None]], owner: str | None = None) -> list[str]:
        """Check every job first, then create them all as queued runs and schedule them.

        Params that carry a training ``config`` are validated (:func:`core.train.config.validate`,
        which applies the demo's limits); in the demo, a session (``owner``) may not have more
        than ``max_active_runs`` runs queued or running. Nothing is queued when any check fails.

        Args:
            jobs: ``(params, display name or None)`` per run.
            owner: who asks (the browser session or signed-in user); None for the command line.

        Returns:
            The run ids, in the order of ``jobs``.

        Raises:
            StudioError: a setting out of range, or the session's queue is full.
        """
        limits = current_limits()
        for params, _ in jobs:
            _check_config(params, limits)
        with self._lock:  # the count and the creation together: two clicks cannot both slip in
            if limits.max_active_runs is not None:
                active = [r for r in self.store.list_runs(status=["queued", "running"]) if r.get("owner") == owner]
                if len(active) + len(jobs) > limits.max_active_runs:
                    wanted = f"{len(jobs)} more run{'s' if len(jobs) != 1 else ''}"
                    raise StudioError(
                        f"you already have {len(active)} run{'s' if len(active) != 1 else ''} queued or training and "
                        f"this demo allows {limits.max_active_runs} at a time, so {wanted} cannot be queued; "
                        "wait for one to finish or cancel one"
                    )
            ids = [self.store.create_run(params, name=name, owner=owner).id for params, name in jobs]
        self.poll()
        return ids

    def submit_existing(self, run_id: str, owner: str | None = None) -> str:
        """Queue an existing run again (resume after ``interrupted``, ``failed``, ``cancelled``).

        The trainer decides from ``checkpoints/last.pt`` where to continue.

        Args:
            run_id: the run.
            owner: who asks; in the demo only the run's own owner may resume it.

        Returns:
            The run id.

        Raises:
            StudioError: when the run is queued or running already, or not the asker's.
        """
        with self._lock:
            run = authorize(self.store, run_id, owner, "resume")
            status = run.meta().get("status")
            if status in ("queued", "running"):
                raise StudioError(f"run '{run_id}' is already {status}; wait for it or cancel it first")
            run.clear_cancel()
            claimed = self.store.update_meta_if(
                run_id, (*FINAL_STATUSES, None),  # type: ignore[arg-type]
                status="queued", queued=utc_now(), finished=None, error=None, pid=None, worker_token=None,
            )
            if claimed is None:
                raise StudioError(f"run '{run_id}' changed state meanwhile; look at it again and retry")
            self._cancels.pop(run_id, None)
        self.poll()
        return run_id

    def cancel(self, run_id: str, owner: str | None = None) -> str:
        """Cancel a run.

        A queued run is cancelled at once. A running one is asked to stop
        (``cancel.request``); its worker ends it as ``cancelled``, and if it has not
        within ``cancel_grace`` seconds it is terminated (then killed).

        Args:
            run_id: the run.
            owner: who asks; in the demo only the run's own owner may cancel it.

        Returns:
            The status right after the call: ``"cancelled"``, ``"running"`` (stopping),
            or the final status the run already had.
        """
        with self._lock:
            run = authorize(self.store, run_id, owner, "cancel")
            status = run.meta().get("status")
            if status == "queued":
                if self.store.update_meta_if(run_id, ["queued"], status="cancelled", finished=utc_now()) is not None:
                    return "cancelled"
                status = run.meta().get("status")  # it was being launched just now
            if status == "running":
                # No poll here: a short-lived runner (``python -m core cancel``) must not
                # start other queued runs as a side effect. The grace is enforced by polls.
                run.request_cancel()
                self._cancels.setdefault(run_id, _Cancel(time.monotonic()))
                return "running"
            return status if isinstance(status, str) else "unknown"

    def status(self, run_id: str) -> str:
        """The run's status as its meta.json says."""
        status = self.store.get(run_id).meta().get("status")
        return status if isinstance(status, str) else "unknown"

    def wait(self, run_id: str, timeout: float | None = None, interval: float = 0.1) -> str:
        """Block until the run reaches a final status (polling, unless the thread runs).

        Args:
            run_id: the run.
            timeout: seconds; None waits for ever.
            interval: seconds between checks.

        Returns:
            The final status.

        Raises:
            StudioError: on timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self.running_in_background:
                self.poll()
            status = self.status(run_id)
            if status in FINAL_STATUSES:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise StudioError(f"run '{run_id}' is still {status} after {timeout:g} s; wait longer or cancel it")
            time.sleep(interval)

    def active(self) -> list[str]:
        """Ids of the runs whose workers this runner started and that are still alive."""
        with self._lock:
            return [rid for rid, job in self._jobs.items() if self.executor.is_alive(job.handle)]

    # -- background thread ---------------------------------------------------------------------
    @property
    def running_in_background(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "JobRunner":
        """Start the daemon thread that calls :meth:`poll` every ``poll_interval`` seconds."""
        with self._lock:
            if not self.running_in_background:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="studio-job-runner", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread. Workers keep running; a later runner adopts them."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "JobRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # keep scheduling; the next pass may well succeed
                logger.exception("job runner poll failed; retrying in %.1f s", self.poll_interval)
            self._stop.wait(self.poll_interval)

    # -- scheduling --------------------------------------------------------------------------
    def poll(self) -> None:
        """One scheduling pass.

        Reaps finished workers (a run left ``running`` becomes ``interrupted``), checks
        workers started by someone else, enforces cancel grace periods, then starts
        queued runs, oldest first, while fewer than ``max_concurrent`` are running.
        """
        with self._lock:
            active: dict[str, int | None] = {}
            for run_id, job in list(self._jobs.items()):
                if self.executor.is_alive(job.handle):
                    active[run_id] = job.gpu
                else:
                    del self._jobs[run_id]
                    exit_code = getattr(self.executor, "exit_code", lambda h: None)(job.handle)
                    self._settle(run_id, exit_code=exit_code, after_restart=False,
                                 handle_pid=getattr(job.handle, "pid", None),
                                 failure=getattr(self.executor, "failure", lambda h: None)(job.handle),
                                 cause=getattr(self.executor, "end_cause", lambda h: None)(job.handle))
            for row in self.store.index.query(status="running", order_by="created", descending=False):
                run_id = row["run_id"]
                if run_id in active:
                    continue
                state, meta = self._foreign_state(run_id)
                if state == "alive":
                    active[run_id] = meta.get("gpu") if isinstance(meta.get("gpu"), int) else None
                elif state == "dead":
                    self._settle(run_id, exit_code=None, after_restart=False)
            self._enforce_cancels(active)
            if len(active) >= self.max_concurrent:
                return
            for row in self.store.index.query(status="queued", order_by="created", descending=False):
                if len(active) >= self.max_concurrent:
                    break
                gpu = self._pick_gpu(active)
                if self._launch(row["run_id"], gpu):
                    active[row["run_id"]] = gpu

    def recover(self) -> list[str]:
        """Reconcile runs a previous runner left ``running`` (called on construction).

        A run whose worker process is gone (or whose pid now belongs to another program)
        becomes ``interrupted`` with a reason; queued runs stay queued.

        Returns:
            The ids of the runs marked interrupted.
        """
        recovered = []
        with self._lock:
            for row in self.store.list_runs(status="running", order_by="created", descending=False):
                run_id = row["run_id"]
                if run_id in self._jobs:
                    continue
                state, _ = self._foreign_state(run_id)
                if state == "dead" and self._settle(run_id, exit_code=None, after_restart=True):
                    recovered.append(run_id)
        return recovered

    def _launch(self, run_id: str, gpu: int | None) -> bool:
        try:
            run = self.store.get(run_id)
        except StudioError:
            self.store.refresh_from_disk(run_id)  # deleted since it was indexed
            return False
        # Claim it first: another runner (a second server, the CLI) may be looking too.
        # The worker clears launch_token when it claims the run; worker_token stays, so a
        # later runner can prove which process is this launch's worker (core.runs.worker_proof).
        token = secrets.token_hex(16)
        fields: dict[str, Any] = dict(
            status="running", pid=None, pid_created=None, launched=utc_now(), started=None,
            finished=None, error=None, host=HOST, launch_token=token, worker_token=token,
            executor=getattr(self.executor, "name", type(self.executor).__name__),
        )
        if gpu is not None:
            fields["gpu"] = gpu
        if self.store.update_meta_if(run_id, ["queued"], **fields) is None:
            return False
        try:
            handle = self.executor.start(run, gpu=gpu) if gpu is not None else self.executor.start(run)
        except Exception as exc:
            logger.exception("could not start a worker for run %s", run_id)
            self.store.update_meta(
                run_id, status="failed", finished=utc_now(),
                error=f"the worker process could not be started ({type(exc).__name__}: {exc}); "
                      "check the studio installation and worker.log, then resume the run",
            )
            return False
        # The worker writes its own pid (and its start time, against pid reuse) when it
        # begins; until then "launched" tells other runners it is on its way, and the
        # launch token tells the worker that this run is its own to claim.
        self._jobs[run_id] = _Job(handle, gpu)
        return True

    def _pick_gpu(self, active: Mapping[str, int | None]) -> int | None:
        gpus = self._gpu_count() if getattr(self.executor, "uses_local_gpus", True) else 0
        if gpus < 1:
            return None
        load = [0] * gpus
        for gpu in active.values():
            if gpu is not None and 0 <= gpu < gpus:
                load[gpu] += 1
        return load.index(min(load))

    def _enforce_cancels(self, active: Mapping[str, Any]) -> None:
        now = time.monotonic()
        for run_id in active.keys() - self._cancels.keys():
            # A cancel asked for by another process (the CLI) gets the same grace period.
            try:
                asked = os.stat(self.store.root / run_id / "cancel.request").st_mtime
            except FileNotFoundError:
                continue
            self._cancels[run_id] = _Cancel(now - max(0.0, time.time() - asked))
        for run_id, cancel in list(self._cancels.items()):
            if run_id not in active:
                del self._cancels[run_id]
            elif cancel.terminated_at is None and now - cancel.requested_at >= self.cancel_grace:
                logger.info("run %s did not stop within %.0f s of its cancel; terminating it", run_id, self.cancel_grace)
                self._signal(run_id, kill=False)
                cancel.terminated_at = now
            elif cancel.terminated_at is not None and not cancel.killed and now - cancel.terminated_at >= self.kill_grace:
                logger.warning("run %s ignored SIGTERM for %.0f s; killing it", run_id, self.kill_grace)
                self._signal(run_id, kill=True)
                cancel.killed = True

    def _signal(self, run_id: str, kill: bool) -> None:
        job = self._jobs.get(run_id)
        if job is not None:
            stop = getattr(self.executor, "kill", self.executor.terminate) if kill else self.executor.terminate
            stop(job.handle)
            return
        state, meta = self._foreign_state(run_id)
        if run_id in self._jobs:  # adopted just now (a cluster executor): stop it through its handle
            self._signal(run_id, kill)
            return
        pid = valid_pid(meta.get("pid"))
        if state != "alive" or pid is None:
            return
        # meta.json alone proves nothing (anyone may edit it, pids are reused): signal only a
        # process whose command line, environment and start time show it is this run's worker.
        if not is_proven_worker(pid, self.store.root / run_id, meta.get("worker_token"),
                                getattr(self.executor, "command", None), _number(meta.get("pid_created")),
                                LAUNCH_TOKEN_ENV):
            self._give_up_cancel(run_id, pid)
            return
        sig = signal.SIGKILL if kill else signal.SIGTERM
        try:
            # Workers we start lead their own session; one run in-process by the CLI may not.
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _give_up_cancel(self, run_id: str, pid: int) -> None:
        """A cancel whose grace ran out, for a run whose recorded process is not provably its
        worker: that process is left alone and the run is recorded as cancelled (a real
        worker behind it sees cancel.request and stops as cancelled too)."""
        logger.warning("run %s: process %d is not provably its worker; not signalling it", run_id, pid)
        self.store.update_meta_if(
            run_id, ["running"], status="cancelled", finished=utc_now(),
            error=(f"Cancelled without stopping process {pid}: it could not be shown to be this run's worker "
                   "(its command line, launch token or start time do not match), so it was not signalled; "
                   "if it is still training this run, stop it where it was started"),
        )

    def _foreign_state(self, run_id: str) -> tuple[str, dict[str, Any]]:
        """``alive``, ``dead``, ``elsewhere`` (another host) or ``settled`` for a run not ours."""
        try:
            run = self.store.get(run_id)
            meta = run.meta()
        except StudioError:
            self.store.refresh_from_disk(run_id)  # deleted, or meta.json damaged
            return "settled", {}
        if meta.get("status") != "running":
            self.store.refresh_from_disk(run_id)  # the index was behind the files
            return "settled", meta
        adopt = getattr(self.executor, "adopt", None)
        if adopt is not None and meta.get("executor") == getattr(self.executor, "name", None):
            handle = adopt(run)  # a worker on a cluster, started by an earlier runner
            if handle is not None:
                self._jobs[run_id] = _Job(handle, None)
                return "alive", meta
            # No actor of that name: gone, on whichever node it ran (unless being launched now).
            launched = _parse_time(meta.get("launched"))
            fresh = launched is not None and time.time() - launched < LAUNCH_GRACE_S
            return ("alive" if fresh and not isinstance(meta.get("pid"), int) else "dead"), meta
        if meta.get("host") not in (None, HOST):
            return "elsewhere", meta
        pid = meta.get("pid")
        if not isinstance(pid, int):
            launched = _parse_time(meta.get("launched"))
            fresh = launched is not None and time.time() - launched < LAUNCH_GRACE_S
            return ("alive" if fresh else "dead"), meta
        alive = is_worker_alive(pid, run, _number(meta.get("pid_created")))
        return ("alive" if alive else "dead"), meta

    def _settle(self, run_id: str, exit_code: int | None, after_restart: bool,
                handle_pid: int | None = None, failure: str | None = None, cause: str | None = None) -> bool:
        """Give a run whose worker is gone a final status if the worker did not. True if it did."""
        try:
            run = self.store.get(run_id)
            meta = run.meta()
        except StudioError:
            self.store.refresh_from_disk(run_id)
            return False
        if meta.get("status") != "running":
            self.store.refresh_from_disk(run_id)
            return False
        pid = meta.get("pid")
        if (handle_pid is not None and isinstance(pid, int) and pid != handle_pid
                and is_worker_alive(pid, run, _number(meta.get("pid_created")))):
            return False  # another live worker has the run (our handle was a launcher)
        if run.cancel_requested():
            fields = dict(status="cancelled", finished=utc_now())
        elif failure:
            fields = dict(status="failed", finished=utc_now(), error=failure)
        else:
            fields = dict(status="interrupted", finished=utc_now(),
                          error=interrupted_reason(run, meta, cause or _cause(exit_code, after_restart)))
        return self.store.update_meta_if(run_id, ["running"], **fields) is not None


def _check_config(params: Mapping[str, Any], limits: Any) -> None:
    config = params.get("config") if isinstance(params, Mapping) else None
    if not isinstance(config, Mapping):
        return  # not a training run of core.train (tests and other executors use their own params)
    from core.train.config import TrainConfig, validate

    try:
        cfg = TrainConfig.from_dict(dict(config))
    except TypeError as exc:
        raise StudioError(f"the run's settings are incomplete ({exc}); choose a dataset and a model") from exc
    validate(cfg, limits=limits)


def _cause(exit_code: int | None, after_restart: bool) -> str:
    if after_restart:
        return "its worker process was gone when the job runner restarted"
    if exit_code is not None and exit_code < 0:
        return f"its worker process was killed by signal {-exit_code}"
    if exit_code is not None:
        return f"its worker process exited with code {exit_code} without finishing (see worker.log)"
    return "its worker process ended without finishing"


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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
