"""How the job runner looks after workers: launching one for a claimed run, telling
whether a run it did not start still has a live worker, settling a run whose worker ended
without a final status, and the cancel grace (terminate, then kill, only a proven worker).

:class:`WorkerSupervision` is part of :class:`core.runs.jobs.JobRunner` (its attributes:
``store``, ``executor``, ``_jobs``, ``_cancels``, ``cancel_grace``, ``kill_grace``); it is
kept apart so the runner's file reads as its public calls and the scheduling pass.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from core.errors import StudioError
from core.runs.executors import LAUNCH_TOKEN_ENV, is_worker_alive
from core.runs.lifecycle import exit_cause, interrupted_reason, utc_now
from core.runs.worker_proof import is_proven_worker, valid_pid

logger = logging.getLogger("core.runs.jobs")  # one logger name for the runner, as before

HOST = socket.gethostname()
# How long a run may sit "running" without a pid while its worker is being launched.
LAUNCH_GRACE_S = 30.0


@dataclass
class _Job:
    handle: Any
    gpu: int | None


@dataclass
class _Cancel:
    requested_at: float
    terminated_at: float | None = None
    killed: bool = False


class WorkerSupervision:
    """The worker-facing half of :class:`core.runs.jobs.JobRunner` (see the module docstring)."""

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
                          error=interrupted_reason(run, meta, cause or exit_cause(exit_code, after_restart)))
        return self.store.update_meta_if(run_id, ["running"], **fields) is not None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
