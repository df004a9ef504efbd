"""The job runner: starts one worker process per run, a few at a time, and watches them.

Training never runs in the Streamlit server. A page calls :meth:`JobRunner.submit`; the
runner queues the run and, when a slot is free, asks its :class:`Executor` to start a
worker (``python -m core.runs.worker RUN_DIR``). The worker writes its own status into
the run store; the runner only reconciles: a worker that vanished without writing a
final status leaves an ``interrupted`` run, with a reason, that can be resumed.

Workers run in their own session, so they outlive a restarted server; the next runner
adopts them (counts them against the concurrency limit) instead of starting more.

Beside it: the executors and the liveness test (:mod:`core.runs.executors`,
:mod:`core.runs.ray_executor`), how the runner launches, watches, settles and stops
workers (:mod:`core.runs.supervise`), the statuses and their sentences
(:mod:`core.runs.lifecycle`), and who may cancel or resume (:mod:`core.runs.owners`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Mapping, Sequence

from core.errors import StudioError
from core.limits import current_limits
from core.runs.executors import (  # noqa: F401  (imported from here too)
    LAUNCH_TOKEN_ENV,
    Executor,
    LocalProcessExecutor,
    cuda_visible_for,
    is_worker_alive,
    least_loaded_gpu,
    local_gpu_count,
)
from core.runs.lifecycle import FINAL_STATUSES, utc_now
from core.runs.owners import authorize
from core.runs.store import RunStore
from core.runs.supervise import HOST, LAUNCH_GRACE_S, WorkerSupervision, _Cancel, _Job  # noqa: F401

logger = logging.getLogger(__name__)


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


class JobRunner(WorkerSupervision):
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
            self._gpus = local_gpu_count()
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

    def _pick_gpu(self, active: Mapping[str, int | None]) -> int | None:
        gpus = self._gpu_count() if getattr(self.executor, "uses_local_gpus", True) else 0
        return least_loaded_gpu(gpus, active)


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
