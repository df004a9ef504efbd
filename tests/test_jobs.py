"""The job runner with a fake worker process (tests/fake_worker.py): scheduling,
cancellation, failures, and recovery after a worker or the server died."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from core.errors import StudioError
from core.runs import JobRunner, LocalProcessExecutor, RunStore
from core.runs import worker
from core.runs.jobs import LAUNCH_TOKEN_ENV, cuda_visible_for, is_worker_alive
from core.runs.worker import one_line_error

FAKE_WORKER = Path(__file__).resolve().parent / "fake_worker.py"
WAIT = 30.0  # generous: CI machines are slow; the runs themselves take a second or two


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def executor() -> LocalProcessExecutor:
    return LocalProcessExecutor([sys.executable, str(FAKE_WORKER)])


@pytest.fixture
def runners():
    """Runners made by a test; their threads are stopped and their workers ended afterwards."""
    made: list[JobRunner] = []
    yield made
    for runner in made:
        runner.stop()
        for job in list(runner._jobs.values()):
            runner.executor.kill(job.handle)
            job.handle.wait(5)


def _runner(runners, store, executor, **kwargs) -> JobRunner:
    kwargs.setdefault("max_concurrent", 1)
    kwargs.setdefault("poll_interval", 0.05)
    runner = JobRunner(store, executor, **kwargs)
    runners.append(runner)
    return runner


def _params(**extra):
    return {"model": "fake", "dataset": "toy", "epochs": 2, "epoch_seconds": 0.2, **extra}


def _until(predicate, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _worker_started(store, run_id):
    """True once the (fake) training function runs in the worker: it sets the device."""
    return store.get(run_id).meta().get("device") == "cpu"


def _last_epoch(store, run_id) -> int:
    epochs = [r["epoch"] for r in store.get(run_id).metrics(kind="epoch")]
    assert epochs
    return max(epochs)


def _t(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_concurrency_one_runs_jobs_one_after_the_other(store, executor, runners):
    runner = _runner(runners, store, executor).start()
    first = runner.submit(_params(epochs=2, epoch_seconds=0.25), name="first")
    second = runner.submit(_params(epochs=1, epoch_seconds=0.2), name="second")

    assert runner.status(first) == "running"
    assert runner.status(second) == "queued"
    _until(lambda: _worker_started(store, first), what="the first worker")
    assert runner.status(second) == "queued"
    assert runner.active() == [first]
    overlap = []
    while runner.status(second) not in ("completed", "failed"):
        overlap.append(len(runner.active()))
        time.sleep(0.02)
        assert len(overlap) < WAIT / 0.02

    assert runner.wait(first, WAIT) == "completed"
    assert runner.wait(second, WAIT) == "completed"
    assert max(overlap) == 1
    a, b = store.get(first).meta(), store.get(second).meta()
    assert _t(a["started"]) < _t(a["finished"]) <= _t(b["started"]) < _t(b["finished"])
    assert a["pid"] != b["pid"] and a["error"] is None
    assert [m["epoch"] for m in store.get(first).metrics(kind="epoch")] == [1, 2]
    rows = {r["run_id"]: r for r in store.list_runs()}
    assert rows[first]["status"] == rows[second]["status"] == "completed"
    assert (rows[first]["test_acc"], rows[first]["epochs_done"], rows[first]["name"]) == (0.75, 2, "first")


def test_two_slots_run_two_jobs_at_once(store, executor, runners):
    runner = _runner(runners, store, executor, max_concurrent=2).start()
    ids = [runner.submit(_params(epochs=1, epoch_seconds=0.6)) for _ in range(2)]
    assert [runner.status(i) for i in ids] == ["running", "running"]
    assert [runner.wait(i, WAIT) for i in ids] == ["completed", "completed"]
    a, b = (store.get(i).meta() for i in ids)
    assert _t(b["started"]) < _t(a["finished"])  # they overlapped


def test_cancel_queued_and_running_jobs(store, executor, runners):
    runner = _runner(runners, store, executor).start()
    running = runner.submit(_params(epochs=100, epoch_seconds=0.2))
    queued = runner.submit(_params())

    assert runner.cancel(queued) == "cancelled"
    meta = store.get(queued).meta()
    assert meta["status"] == "cancelled" and meta["pid"] is None and meta["started"] is None

    _until(lambda: _worker_started(store, running), what="the worker")
    assert runner.cancel(running) == "running"  # asked to stop; the worker confirms
    assert store.get(running).cancel_requested()
    assert runner.wait(running, WAIT) == "cancelled"
    assert store.get(running).meta()["epoch"] < 100
    time.sleep(0.2)
    assert store.get(queued).meta()["started"] is None  # never started afterwards
    assert runner.cancel(running) == "cancelled"  # cancelling again changes nothing


def test_worker_ignoring_cancel_is_terminated(store, executor, runners):
    runner = _runner(runners, store, executor, cancel_grace=0.3).start()
    run_id = runner.submit(_params(epochs=100, epoch_seconds=0.2, mode="stubborn"))
    _until(lambda: _worker_started(store, run_id), what="the worker")
    pid = store.get(run_id).meta()["pid"]
    runner.cancel(run_id)

    assert runner.wait(run_id, WAIT) == "cancelled"  # written by the worker's SIGTERM handler
    _until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
           what="the worker to exit")
    assert "marked cancelled" in store.get(run_id).log_path.read_text()


def test_failing_worker_leaves_a_one_line_error(store, executor, runners):
    runner = _runner(runners, store, executor)
    run_id = runner.submit(_params(mode="fail"))

    assert runner.wait(run_id, WAIT) == "failed"
    error = store.get(run_id).meta()["error"]
    assert error == "RuntimeError: fake failure in epoch 1 (the traceback is in worker.log)"
    log = store.get(run_id).log_path.read_text()
    assert "Traceback (most recent call last)" in log and "second line of detail" in log
    [row] = store.list_runs()
    assert row["status"] == "failed" and row["error"] == error


def test_worker_killed_under_a_running_runner_is_interrupted(store, executor, runners):
    runner = _runner(runners, store, executor).start()
    run_id = runner.submit(_params(epochs=100, epoch_seconds=0.1))
    _until(lambda: (store.get(run_id).meta().get("epoch") or 0) >= 1, what="the first epoch")
    os.kill(store.get(run_id).meta()["pid"], signal.SIGKILL)

    assert runner.wait(run_id, WAIT) == "interrupted"
    meta = store.get(run_id).meta()
    assert f"after epoch {_last_epoch(store, run_id)} of 100" in meta["error"]
    assert "killed by signal 9" in meta["error"] and "can be resumed" in meta["error"]


def test_server_restart_marks_dead_workers_interrupted_and_keeps_the_queue(store, executor, runners):
    old = _runner(runners, store, executor)  # no thread: as if the server froze, then died
    run_id = old.submit(_params(epochs=100, epoch_seconds=0.1))
    waiting = store.create_run(_params()).id
    _until(lambda: (store.get(run_id).meta().get("epoch") or 0) >= 1, what="the first epoch")
    pid, created = store.get(run_id).meta()["pid"], store.get(run_id).meta()["pid_created"]
    os.kill(pid, signal.SIGKILL)
    # The runner's own test (with the start time): a process still tearing down has lost its
    # command line already, but it is not a zombie yet, so only this criterion says "dead" in time.
    _until(lambda: not is_worker_alive(pid, store.get(run_id), created), what="the worker to die")
    assert store.get(run_id).meta()["status"] == "running"  # nobody noticed yet

    new = JobRunner(store, executor, max_concurrent=1, poll_interval=0.05)  # the restarted server
    runners.append(new)
    meta = store.get(run_id).meta()
    assert meta["status"] == "interrupted"
    assert f"Interrupted after epoch {_last_epoch(store, run_id)} of 100" in meta["error"]
    assert "can be resumed" in meta["error"]
    assert store.get(waiting).meta()["status"] == "queued"
    assert [r["status"] for r in store.list_runs(status="interrupted")] == ["interrupted"]

    # Resume: queued again, behind the run that was already waiting.
    new.cancel(waiting)
    assert new.submit_existing(run_id) == run_id
    assert new.status(run_id) == "running"
    assert store.get(run_id).meta()["error"] is None
    with pytest.raises(StudioError, match="already running"):
        new.submit_existing(run_id)
    new.cancel(run_id)
    assert new.wait(run_id, WAIT) == "cancelled"


def test_restart_adopts_a_live_worker_instead_of_starting_another(store, executor, runners):
    old = _runner(runners, store, executor)
    live = old.submit(_params(epochs=2, epoch_seconds=0.3))
    queued = old.submit(_params(epochs=1, epoch_seconds=0.1))
    _until(lambda: _worker_started(store, live), what="the worker")

    new = _runner(runners, store, executor)
    new.poll()
    assert store.get(live).meta()["status"] == "running"  # still alive: left alone
    assert store.get(queued).meta()["status"] == "queued"  # its slot is taken
    new.start()
    assert new.wait(live, WAIT) == "completed"
    assert new.wait(queued, WAIT) == "completed"


def test_recover_does_not_trust_a_reused_pid(store, executor, runners):
    run = store.create_run(_params())
    # A pid that is alive but is not a worker for this run (this test process).
    store.update_meta(run.id, status="running", pid=os.getpid(), epoch=0)

    reused = store.create_run(_params())
    store.update_meta(reused.id, status="running", pid=os.getpid(), pid_created=123.0)
    alive = store.create_run(_params())
    store.update_meta(alive.id, status="running", pid=os.getpid(),
                      pid_created=psutil.Process().create_time())

    runner = _runner(runners, store, executor)
    meta = run.meta()
    assert meta["status"] == "interrupted"
    assert "before it finished its first epoch" in meta["error"]
    assert reused.meta()["status"] == "interrupted"
    assert alive.meta()["status"] == "running"  # the very process that recorded itself
    assert runner.recover() == []


def test_runner_defaults_to_one_job_on_cpu(store, executor):
    assert JobRunner(store, executor).max_concurrent == 1  # conftest sets STUDIO_DEVICE=cpu


def test_each_worker_sees_its_own_gpu():
    assert cuda_visible_for(1, None) == "1"
    assert cuda_visible_for(1, "4,6") == "6"
    assert cuda_visible_for(0, "GPU-aaaa, GPU-bbbb") == "GPU-aaaa"


def test_executor_writes_worker_log_and_its_own_session(store, tmp_path):
    script = tmp_path / "print_args.py"
    script.write_text("import os, sys; print('args', sys.argv[1:], os.getsid(0) == os.getpid())\n")
    run = store.create_run(_params())
    ex = LocalProcessExecutor([sys.executable, str(script)])
    handle = ex.start(run)
    assert handle.wait(WAIT) == 0
    assert not ex.is_alive(handle)
    assert f"args ['{run.dir}'] True" in run.log_path.read_text()


def test_error_messages_for_meta_are_one_line():
    assert one_line_error(StudioError("learning rate 5 is too large; use at most 1")) == (
        "learning rate 5 is too large; use at most 1")
    assert one_line_error(ValueError("bad\nshape (3, 4)")) == "ValueError: bad (the traceback is in worker.log)"
    assert one_line_error(MemoryError()) == "MemoryError (the traceback is in worker.log)"
    long = one_line_error(RuntimeError("x" * 1000))
    assert len(long) == 300 and long.endswith("...") and "\n" not in long


def _quick_training(calls):
    def train(run, store):
        calls.append(run.id)
        store.update_meta(run.id, epoch=1, epochs_done=1)
    return train


def test_worker_claims_only_runs_that_are_its_own(store, monkeypatch):
    monkeypatch.delenv(LAUNCH_TOKEN_ENV, raising=False)
    calls: list[str] = []
    launching = store.create_run(_params())
    store.update_meta(launching.id, status="running", pid=None, launch_token="t0ken")
    finished = store.create_run(_params())
    store.update_meta(finished.id, status="completed")

    # A worker started by hand must not train a run the job runner is launching, nor a finished one.
    assert worker.main([str(launching.dir)], train=_quick_training(calls)) == worker.EXIT_REFUSED
    assert worker.main([str(finished.dir)], train=_quick_training(calls)) == worker.EXIT_REFUSED
    assert calls == []
    assert launching.meta()["status"] == "running" and launching.meta()["pid"] is None
    assert finished.meta()["status"] == "completed"

    # The worker the runner launched carries the token.
    monkeypatch.setenv(LAUNCH_TOKEN_ENV, "t0ken")
    assert worker.main([str(launching.dir)], train=_quick_training(calls)) == 0
    meta = launching.meta()
    assert calls == [launching.id]
    assert (meta["status"], meta["pid"], meta["launch_token"]) == ("completed", os.getpid(), None)
    assert meta["pid_created"] == psutil.Process().create_time()


def test_worker_marks_an_exception_failed_in_process(store):
    run = store.create_run(_params())

    def broken(run, store):
        raise StudioError("dataset 'toy' is missing; download it first")

    assert worker.main([str(run.dir)], train=broken) == 1
    meta = run.meta()
    assert meta["status"] == "failed" and meta["error"] == "dataset 'toy' is missing; download it first"
    assert meta["finished"] is not None


def test_runner_can_start_its_thread_on_construction(store, executor, runners):
    runner = JobRunner(store, executor, max_concurrent=1, poll_interval=0.05, start_thread=True)
    runners.append(runner)
    assert runner.running_in_background
    run_id = store.create_run(_params(epochs=1, epoch_seconds=0.05)).id  # e.g. queued by the CLI
    assert runner.wait(run_id, WAIT) == "completed"


def test_cancel_from_another_process_is_enforced_after_the_grace(store, executor, runners):
    runner = _runner(runners, store, executor, cancel_grace=0.3).start()
    run_id = runner.submit(_params(epochs=100, epoch_seconds=0.2, mode="stubborn"))
    _until(lambda: _worker_started(store, run_id), what="the worker")
    store.get(run_id).request_cancel()  # what `python -m core cancel` does from its own process

    assert runner.wait(run_id, WAIT) == "cancelled"
    assert store.get(run_id).meta()["epoch"] < 100
