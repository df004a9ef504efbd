"""Issue 16, items 2 to 4: CSV cells are never formulas, the job runner signals only a process
proven to be the run's worker (and survives any pid a meta.json may hold), and the demo's
owner rule lives in the store and the runner, with the pages showing its refusal."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from streamlit.testing.v1 import AppTest

from core.errors import StudioError
from core.runs import JobRunner, LocalProcessExecutor, RunStore
from core.runs.jobs import LAUNCH_TOKEN_ENV, is_worker_alive
from core.runs.worker_proof import is_proven_worker, valid_pid

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")
HOST = socket.gethostname()
SLEEPER = "import time; time.sleep(60)"


# ---------------------------------------------------------------------------- CSV formulas
def test_csv_guard_quotes_text_formulas_and_keeps_numbers():
    from core.csv_safe import csv_cell, frame_to_csv_bytes, guard_frame

    assert csv_cell("=1+1 x") == "'=1+1 x" and csv_cell("+1") == "'+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-2") == "'-2" and csv_cell("\t=x") == "'\t=x" and csv_cell("scan.png") == "scan.png"
    table = pd.DataFrame({"file": ["=2+2.png", "ok.png", None], "delta": [-0.5, 0.25, math.nan],
                          "tags": pd.Series(["@x, y", "", "a"], dtype="string"), "=col": [1, 2, 3]})
    guarded = guard_frame(table)
    assert guarded["file"].tolist()[:2] == ["'=2+2.png", "ok.png"] and guarded["file"].isna().tolist()[2]
    assert guarded["delta"].tolist()[:2] == [-0.5, 0.25], "numbers stay numbers, negative ones too"
    assert guarded["tags"].tolist() == ["'@x, y", "", "a"] and list(guarded.columns)[-1] == "'=col"
    assert table["file"].tolist()[0] == "=2+2.png", "the page's own table is not changed"
    text = frame_to_csv_bytes(table).decode()
    assert text.splitlines() == ["file,delta,tags,'=col", "'=2+2.png,-0.5,\"'@x, y\",1", "ok.png,0.25,,2", ",,a,3"]


def test_predict_cli_and_pages_share_one_guard():
    import core.cli.predict
    import core.csv_safe

    assert core.cli.predict.csv_cell is core.csv_safe.csv_cell


# ---------------------------------------------------------------------------- signals
@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def processes():
    """Processes a test starts; ended (by their own pid) afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _spawn(processes, args, env=None) -> subprocess.Popen:
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until its command line is the one asked for
        try:
            if psutil.Process(proc.pid).cmdline()[1:] == list(args)[1:]:
                break
        except psutil.Error:
            pass
        time.sleep(0.02)
    return proc


def _running(store: RunStore, proc: subprocess.Popen, token: str | None = "t0ken") -> str:
    """A run whose meta.json says ``proc`` is its worker (pid, start time, host, token)."""
    run = store.create_run({"model": "fake", "dataset": "toy"}, name="victim")
    store.update_meta(run.id, status="running", pid=proc.pid, pid_created=psutil.Process(proc.pid).create_time(),
                      host=HOST, worker_token=token, started="2026-01-01T00:00:00+00:00")
    return run.id


def _cancel_past_its_grace(store: RunStore, run_id: str) -> JobRunner:
    runner = JobRunner(store, LocalProcessExecutor(), max_concurrent=1, cancel_grace=0.0, kill_grace=0.0)
    assert runner.cancel(run_id) == "running", "the recorded process looks alive, so it is asked to stop"
    for _ in range(3):  # terminate, then kill, then settle
        runner.poll()
        time.sleep(0.1)
    return runner


@pytest.mark.parametrize("case", ["unrelated", "run dir on its command line", "worker's command line, no token"])
def test_cancel_never_signals_a_process_that_is_not_the_runs_worker(store, processes, case):
    """meta.json points at a live process of ours that is not this run's worker (meta.json
    alone proves nothing): the cancel is recorded, the process keeps running."""
    run_dir = str(store.root / "placeholder")
    args = {
        "unrelated": ["sleep", "60"],
        "run dir on its command line": [sys.executable, "-c", SLEEPER, run_dir],
        "worker's command line, no token": [sys.executable, "-c", SLEEPER, "-m", "core.runs.worker", run_dir],
    }[case]
    run_id = store.create_run({"model": "fake", "dataset": "toy"}).id
    args = [a.replace(run_dir, str(store.root / run_id)) for a in args]
    proc = _spawn(processes, args)
    store.update_meta(run_id, status="running", pid=proc.pid, pid_created=psutil.Process(proc.pid).create_time(),
                      host=HOST, worker_token="t0ken")

    _cancel_past_its_grace(store, run_id)

    assert proc.poll() is None, "the process was not signalled"
    assert psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE
    meta = store.get(run_id).meta()
    assert meta["status"] == "cancelled"
    assert f"without stopping process {proc.pid}" in meta["error"] and "not signalled" in meta["error"]


def test_cancel_signals_the_proven_worker(store, processes):
    """The same command line with the run's launch token in its environment is the worker:
    it gets SIGTERM once the cancel's grace is over."""
    run_id = store.create_run({"model": "fake", "dataset": "toy"}).id
    proc = _spawn(processes, [sys.executable, "-c", SLEEPER, "-m", "core.runs.worker", str(store.root / run_id)],
                  env={LAUNCH_TOKEN_ENV: "t0ken"})
    store.update_meta(run_id, status="running", pid=proc.pid, pid_created=psutil.Process(proc.pid).create_time(),
                      host=HOST, worker_token="t0ken")
    assert is_proven_worker(proc.pid, store.root / run_id, "t0ken")
    assert not is_proven_worker(proc.pid, store.root / run_id, "another")
    assert not is_proven_worker(proc.pid, store.root / "other-run", "t0ken")
    assert not is_proven_worker(proc.pid, store.root / run_id, "t0ken", created=123.0), "a reused pid"

    runner = _cancel_past_its_grace(store, run_id)

    assert proc.wait(10) == -signal.SIGTERM
    runner.poll()
    assert store.get(run_id).meta()["status"] == "cancelled"


def test_the_runner_records_the_token_it_hands_its_worker(store, processes, tmp_path):
    """A worker the runner launches carries worker_token; a restarted runner can prove it."""
    script = tmp_path / "env_worker.py"
    script.write_text("import os, sys, time\nprint(os.environ.get(sys.argv[1]), flush=True)\ntime.sleep(60)\n")
    runner = JobRunner(store, LocalProcessExecutor([sys.executable, str(script), LAUNCH_TOKEN_ENV]),
                       max_concurrent=1)
    run_id = runner.submit({"model": "fake", "dataset": "toy"})
    handle = runner._jobs[run_id].handle
    processes.append(handle)
    meta = store.get(run_id).meta()
    token = meta["worker_token"]
    assert isinstance(token, str) and len(token) >= 32 and token == meta["launch_token"]
    deadline = time.monotonic() + 10
    while token not in store.get(run_id).log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert token in store.get(run_id).log_path.read_text(), "the worker's environment carries it"
    assert is_proven_worker(handle.pid, store.root / run_id, token, [sys.executable, str(script), LAUNCH_TOKEN_ENV])


@pytest.mark.parametrize("pid", [-1, 0, "abc", 2**40, True, 2.5])
def test_a_pid_no_process_can_have_is_a_dead_worker(store, pid):
    """A hand-edited meta.json with pid -1 used to raise inside psutil while the runner
    started, so every page failed: now the run is interrupted and the runner starts."""
    bystander = store.create_run({"model": "fake", "dataset": "toy"}).id
    run_id = store.create_run({"model": "fake", "dataset": "toy"}).id
    store.update_meta(run_id, status="running", pid=pid, host=HOST, pid_created=None)
    assert valid_pid(pid) is None
    assert not is_worker_alive(pid, store.get(run_id)) and not is_proven_worker(pid, store.root / run_id, "t")

    runner = JobRunner(store, LocalProcessExecutor(["true"]), max_concurrent=1)

    meta = store.get(run_id).meta()
    assert meta["status"] == "interrupted" and "can be resumed" in meta["error"]
    assert store.get(bystander).meta()["status"] == "queued"
    assert runner.recover() == [], "nothing left to recover"


# ---------------------------------------------------------------------------- owner rules
@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")


class IdleExecutor:
    """A worker that never finishes (the run stays running)."""

    name = "idle"

    def start(self, run, gpu=None):
        return object()

    def is_alive(self, handle):
        return True

    def terminate(self, handle):
        pass


def test_the_store_enforces_the_demo_owner_rule_for_every_change(demo, store):
    runner = JobRunner(store, IdleExecutor(), max_concurrent=1)
    bobs = runner.submit({"model": "fake", "dataset": "toy"}, name="bob's run", owner="bob")  # running
    done = store.create_run({"model": "fake", "dataset": "toy"}, name="bob's old run", owner="bob").id
    store.update_meta(done, status="completed")
    refusals = {
        "rename": lambda: store.rename(done, "mine now", owner="ann"),
        "change the tags of": lambda: store.set_tags(done, ["pwned"], owner="ann"),
        "delete": lambda: store.delete(done, owner="ann"),
        "cancel": lambda: runner.cancel(bobs, owner="ann"),
        "resume": lambda: runner.submit_existing(done, owner="ann"),
    }
    for verb, attempt in refusals.items():
        with pytest.raises(StudioError, match=f"^this run was started by someone else, and in this demo you can "
                                              f"{verb} only your own runs$"):
            attempt()
    meta = store.get(done).meta()
    assert (meta["name"], meta["tags"], meta["status"]) == ("bob's old run", [], "completed"), "nothing changed"
    assert store.get(bobs).meta()["status"] == "running" and not store.get(bobs).cancel_requested()

    store.rename(done, "renamed by bob", owner="bob")
    assert store.set_tags(done, ["final"], owner="bob") == ["final"]
    store.rename(done, "renamed by the operator")  # the command line (owner None) is never refused
    assert store.get(done).meta()["name"] == "renamed by the operator"
    assert runner.cancel(bobs, owner="bob") == "running"


def test_the_owner_rule_is_off_outside_the_demo(store):
    run_id = store.create_run({"model": "fake", "dataset": "toy"}, owner="bob").id
    store.rename(run_id, "ann renamed it", owner="ann")
    assert store.set_tags(run_id, ["shared"], owner="ann") == ["shared"]
    store.delete(run_id, owner="ann")
    assert not store.exists(run_id)


def _demo_compare(tmp_path, monkeypatch) -> tuple[AppTest, RunStore, str]:
    monkeypatch.setenv("STUDIO_DEMO", "1")
    store = RunStore(tmp_path / "runs")
    run = store.create_run({"model": "resnet18", "dataset": "breastmnist", "image_size": 28}, name="bob's run",
                           owner="bob")
    store.update_meta(run.id, status="completed")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at, store, run.id


@pytest.fixture
def stop_runner():
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


def test_compare_shows_the_stores_refusal_to_rename_or_tag_another_visitors_run(tmp_path, monkeypatch,
                                                                                stop_runner):
    at, store, run_id = _demo_compare(tmp_path, monkeypatch)
    at.text_input(key=f"name-{run_id}").set_value("hijacked").run()
    at.button(key="rename").click().run()
    assert [e.value for e in at.error] == [
        "This run was started by someone else, and in this demo you can rename only your own runs."]
    at.text_input(key=f"tags-{run_id}").set_value("pwned").run()
    at.button(key="tag").click().run()
    assert [e.value for e in at.error] == [
        "This run was started by someone else, and in this demo you can change the tags of only your own runs."]
    meta = store.get(run_id).meta()
    assert (meta["name"], meta["tags"]) == ("bob's run", [])
    assert "In this demo you can delete only the runs you started." in [c.value for c in at.caption]


def test_demo_sidebar_shows_no_server_directories(tmp_path, monkeypatch, stop_runner):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = "\n".join(str(e.value) for kind in ("markdown", "code", "text", "caption", "error", "info")
                      for e in getattr(at.sidebar, kind))
    assert "Demo limits" in shown
    for path in (tmp_path / "runs", tmp_path / "data", Path(os.environ["STUDIO_RUNS_DIR"]).resolve()):
        assert str(path) not in shown
    assert "Runs are saved in" not in shown and "Datasets are read from" not in shown
