"""The worker process: ``python -m core.runs.worker RUN_DIR`` trains one run.

The job runner starts it (so does ``python -m core train``). It marks the run
``running`` with its pid and start time, hands over to ``core.train.run_training(run, store)``
(which reports how training ended), and writes the final status and time: ``completed``,
``cancelled`` (a cancel was requested), ``failed`` (an exception; a one-line message in
meta.json, the traceback in worker.log) or, on SIGTERM without a cancel request,
``interrupted``. Training itself never writes the status or the times.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil

from core.errors import StudioError
from core.runs.executors import LAUNCH_TOKEN_ENV, is_worker_alive
from core.runs.store import Run, RunStore, interrupted_reason, utc_now

logger = logging.getLogger("core.runs.worker")

#: The exit status after SIGTERM, as a shell reports a process ended by it.
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_REFUSED = 3
_MAX_MESSAGE = 300

TrainFn = Callable[[Run, RunStore], Any]


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler (BaseException: trainers catching
    ``Exception`` do not swallow it)."""


#: Set by the SIGTERM handler. The exception it raises lands at whatever Python line runs
#: next, which may be a callback inside C++ code (``torch.save`` calling a file's write):
#: torch turns it into a RuntimeError there, so a failure seen after a SIGTERM is a
#: termination, not a fault of the run.
_terminated = threading.Event()


def main(argv: Sequence[str] | None = None, train: TrainFn | None = None) -> int:
    """Run one training job in this process.

    Args:
        argv: ``[RUN_DIR]``; defaults to ``sys.argv[1:]``.
        train: the training function; defaults to ``core.train.run_training`` (tests
            pass a fake one).

    Returns:
        The exit status: 0 completed or cancelled, 1 failed, 2 bad usage or no such
        run, 3 not this worker's to train (finished, or another worker has it),
        143 terminated.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m core.runs.worker RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_dir = Path(argv[0]).resolve()
    try:
        store = RunStore(run_dir.parent)
        run = store.get(run_dir.name)
        refusal: list[str] = []
        claimed = store.update_meta_if(
            run.id, lambda meta: _may_claim(run, meta, refusal), status="running", pid=os.getpid(),
            pid_created=psutil.Process().create_time(), started=utc_now(), finished=None,
            error=None, host=socket.gethostname(), launch_token=None,
        )
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if claimed is None:
        print(f"error: {refusal[0] if refusal else 'run ' + run.id + ' cannot be started now'}", file=sys.stderr)
        return EXIT_REFUSED
    logger.info("worker %d training run %s", os.getpid(), run.id)
    if run.cancel_requested():
        logger.info("run %s was cancelled before training began", run.id)
        _finish(store, run, "cancelled")
        return 0

    previous = _install_sigterm_handler()
    try:
        return _train(store, run, train)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _train(store: RunStore, run: Run, train: TrainFn | None) -> int:
    _terminated.clear()
    try:
        if train is None:
            # imported here: heavy. A run on several processes starts its followers first.
            from core.runs.ddp_launcher import training_function

            train = training_function(run)
        result = train(run, store)
    except _Terminated:
        return _terminated_run(store, run)
    except KeyboardInterrupt:
        _ignore_sigterm()
        _finish(store, run, "interrupted", interrupted_reason(
            run, run.meta(), "its worker process was interrupted from the keyboard"))
        return 130
    except Exception as exc:
        _ignore_sigterm()
        if _terminated.is_set():  # the SIGTERM's exception, turned into another one on its way
            logger.info("run %s: %s after SIGTERM", run.id, type(exc).__name__)
            return _terminated_run(store, run)
        message = _out_of_memory(exc, run)
        if message is None:
            traceback.print_exc()  # the full story goes to worker.log
            message = one_line_error(exc, store.root)
        # else the allocator's text and the traceback say nothing the sentence does not
        logger.error("run %s failed: %s", run.id, message)
        _finish(store, run, "failed", message)
        return 1
    _ignore_sigterm()
    # Training reports how it ended ("completed" or "cancelled"); the worker records it with
    # the time. A training function that set a final status itself is left as it is.
    reported = result.get("status") if isinstance(result, dict) else None
    if reported not in ("completed", "cancelled"):
        reported = "cancelled" if run.cancel_requested() else "completed"
    if run.meta().get("status") == "running":
        _finish(store, run, reported)
    logger.info("run %s %s", run.id, run.meta().get("status"))
    return 0


def _terminated_run(store: RunStore, run: Run) -> int:
    """Record a run whose worker got SIGTERM: cancelled if a cancel was asked, else interrupted."""
    _ignore_sigterm()
    if run.cancel_requested():
        _finish(store, run, "cancelled")
    else:
        _finish(store, run, "interrupted", interrupted_reason(
            run, run.meta(), "its worker process was stopped (SIGTERM)"))
    logger.warning("terminated; run %s marked %s", run.id, run.meta().get("status"))
    return EXIT_TERMINATED


def train_in_this_process(run: Run, store: RunStore, progress: Callable[[dict], None] | None = None,
                          extra_callbacks: list | None = None) -> int:
    """Train a queued run here, as a worker process would: claim it, train it with
    ``core.train.run_training`` and record its status and times (tests and benchmarks that
    have no job runner use this).

    Args:
        run: a queued run of ``store``.
        store: its run store.
        progress: the step/epoch callback handed to the trainer.
        extra_callbacks: trainer callbacks added to the run's own (benchmarks).

    Returns:
        :func:`main`'s exit status (0 completed or cancelled, 1 failed, ...).
    """
    from core.train import run_training

    return main([str(run.dir)], train=lambda r, s: run_training(r, s, progress, extra_callbacks))


def _may_claim(run: Run, meta: dict[str, Any], refusal: list[str]) -> bool:
    """Whether this process may train ``run`` now (checked under the run's meta lock)."""
    status = meta.get("status")
    if status == "queued":
        return True
    if status != "running":
        refusal.append(f"run '{run.id}' is {status}, not queued; resume it to train it again")
        return False
    token = meta.get("launch_token")
    if token is not None and token == os.environ.get(LAUNCH_TOKEN_ENV):
        return True  # the job runner claimed it for this very process
    pid = meta.get("pid")
    if isinstance(pid, int):
        if pid != os.getpid() and is_worker_alive(pid, run, _number(meta.get("pid_created"))):
            refusal.append(f"run '{run.id}' is already being trained by process {pid}; cancel it first")
            return False
        return True  # its worker is gone: take over
    refusal.append(f"run '{run.id}' is being started by the job runner; watch it in the studio or cancel it first")
    return False


def one_line_error(exc: BaseException, runs_root: str | os.PathLike | None = None) -> str:
    """A one-line message for meta.json: a StudioError's own sentence, a full or read-only
    disk in words (see :func:`storage_problem`), else the exception's type and first line."""
    storage = storage_problem(exc, runs_root)
    if storage is not None:
        return storage
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if isinstance(exc, StudioError) and first:
        message = first
    else:
        message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        message += " (the traceback is in worker.log)"
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def storage_problem(exc: BaseException, runs_root: str | os.PathLike | None = None) -> str | None:
    """What to tell a person when ``exc`` (or what caused it) is a full or unwritable disk.

    Args:
        exc: the exception that ended the run.
        runs_root: the runs directory; a permission error counts as "cannot write the runs
            directory" only for a file inside it (elsewhere it may be a dataset not readable).

    Returns:
        One sentence naming the file that could not be written, or None for other errors.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError):
            what = Path(cur.filename).name if cur.filename else "a file of the run"
            if cur.errno in _DISK_FULL:
                return (f"the disk is full: {what} could not be written (no space left on the device); "
                        "free disk space, then resume the run from its last checkpoint")
            inside = (runs_root is not None and cur.filename is not None
                      and Path(cur.filename).resolve().is_relative_to(Path(runs_root).resolve()))
            if cur.errno == errno.EROFS or (cur.errno in (errno.EACCES, errno.EPERM) and inside):
                return (f"the runs directory cannot be written: {what} could not be saved ({cur.strerror}); "
                        "fix its permissions, then resume the run from its last checkpoint")
        cur = cur.__cause__ or cur.__context__
    return None


def _out_of_memory(exc: BaseException, run: Run) -> str | None:
    """The out-of-memory sentence for ``exc`` with the run's own settings, or None."""
    from core.train.oom import out_of_memory_message

    try:
        config = run.params().get("config")
    except StudioError:
        config = None
    return out_of_memory_message(exc, config if isinstance(config, dict) else None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _finish(store: RunStore, run: Run, status: str, error: str | None = None) -> None:
    fields: dict[str, Any] = {"status": status, "finished": utc_now()}
    if error is not None:
        fields["error"] = error
    try:
        store.update_meta(run.id, **fields)
    except OSError as exc:
        # The disk may be full for meta.json too. The run stays "running" without a live
        # worker, which the job runner turns into "interrupted" once this process is gone.
        logger.error("could not record run %s as %s: %s", run.id, status, exc)


def _install_sigterm_handler() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None  # signals only reach the main thread; nothing to install
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: object) -> None:
    _ignore_sigterm()  # once is enough: let the final status be written in peace
    _terminated.set()
    raise _Terminated()


def _ignore_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
