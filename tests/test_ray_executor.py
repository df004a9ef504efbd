"""The Ray executor on a local Ray cluster started by the tests: concurrent runs, cancel, a
killed Ray worker and resume, a 4-run sweep (core.experiments), a restarted server finding its runs again, the
shared-storage message, and the one-sentence errors when Ray is missing or unreachable.

Real training (core.runs.worker.main -> run_training) on a tiny generated dataset.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray (pip install -r requirements-ray.txt)")

from core.errors import StudioError  # noqa: E402
from core.runs import JobRunner, RunStore  # noqa: E402
from core.runs.jobs import make_executor  # noqa: E402
from core.runs.ray_executor import NAMESPACE, RayExecutor  # noqa: E402
from core.train import build_params, make_config  # noqa: E402
from helpers_runs import write_square_npz  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WAIT = 120.0  # generous: two cores shared by every test and the cluster itself


@pytest.fixture(scope="module")
def cluster():
    """A two-CPU Ray cluster inside this test process; yields its address."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace=NAMESPACE)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A learnable binary dataset in MedMNIST's .npz format (bright square or not)."""
    root = tmp_path_factory.mktemp("ray-data")
    write_square_npz(root / "breastmnist.npz", (64, 16, 16))
    return root


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def runners():
    """Runners made by a test; stopped, and their actors killed, at its end."""
    made: list[JobRunner] = []
    yield made
    for runner in made:
        runner.stop()
        for job in list(runner._jobs.values()):
            runner.executor.kill(job.handle)


def _runner(runners, store, executor=None, **kwargs) -> JobRunner:
    kwargs.setdefault("poll_interval", 0.1)
    runner = JobRunner(store, executor or RayExecutor(env={"OMP_NUM_THREADS": "1"}), **kwargs)
    runners.append(runner)
    return runner


def _params(data_dir, epochs=2, seed=0):
    cfg = make_config("breastmnist", "medvcnn", "default", data_dir=str(data_dir), epochs=epochs,
                      batch_size=16, seed=seed, device="cpu", augment="none")
    return build_params(cfg)


def _until(predicate, what, timeout=WAIT, runner=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner is not None:
            runner.poll()
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _epochs(run) -> list[int]:
    return [r["epoch"] for r in run.metrics(kind="epoch")]


def test_two_runs_train_at_once_on_the_cluster(cluster, data_dir, store, runners):
    runner = _runner(runners, store)
    assert runner.max_concurrent == 2  # the cluster's two CPUs, one per run
    ids = [runner.submit(_params(data_dir, epochs=2, seed=s), name=f"run {s}") for s in (0, 1)]
    both = lambda: all(isinstance(store.get(i).meta().get("pid"), int) for i in ids) and all(  # noqa: E731
        store.get(i).meta()["status"] == "running" for i in ids)
    _until(both, "both runs training at the same time", runner=runner)
    for run_id in ids:
        assert runner.wait(run_id, timeout=WAIT) == "completed", store.get(run_id).meta().get("error")
    metas = [store.get(i).meta() for i in ids]
    assert {m["executor"] for m in metas} == {"ray"}
    assert all(m["ray_actor"].startswith(f"studio-run-{i}-") for m, i in zip(metas, ids))
    assert metas[0]["pid"] != metas[1]["pid"]  # two Ray worker processes
    assert all(_epochs(store.get(i)) == [1, 2] and store.get(i).eval()["test"]["n"] == 16 for i in ids)
    assert "starting on the Ray cluster" in store.get(ids[0]).log_path.read_text()
    # the actors ended with their runs: their CPUs are free again
    _until(lambda: ray.available_resources().get("CPU", 0) == 2, "the actors to give their CPUs back")


def test_cancel_one_run_mid_run(cluster, data_dir, store, runners):
    runner = _runner(runners, store)
    cancelled = runner.submit(_params(data_dir, epochs=40))
    stopped = runner.submit(_params(data_dir, epochs=40, seed=1))
    _until(lambda: all(_epochs(store.get(i)) for i in (cancelled, stopped)), "both first epochs", runner=runner)
    assert runner.cancel(cancelled) == "running"
    # The runner's terminate (after a cancel's grace, or a server shutting down): SIGTERM
    # sent by a task on the worker's node, which the worker answers by recording why.
    runner.executor.terminate(runner._jobs[stopped].handle)
    assert runner.wait(cancelled, timeout=WAIT) == "cancelled"
    assert runner.wait(stopped, timeout=WAIT) == "interrupted"
    assert len(_epochs(store.get(cancelled))) < 40 and store.get(cancelled).meta()["finished"]
    error = store.get(stopped).meta()["error"]
    assert "its worker process was stopped (SIGTERM)" in error and "resumed" in error
    assert "terminated; run" in store.get(stopped).log_path.read_text()  # the worker's log, not Ray's


def test_killed_ray_worker_is_interrupted_and_resume_finishes(cluster, data_dir, store, runners, capsys):
    from core.cli import main as cli

    runner = _runner(runners, store)
    run_id = runner.submit(_params(data_dir, epochs=12))
    run = store.get(run_id)
    _until(lambda: len(_epochs(run)) >= 2 and run.last_checkpoint.exists(), "two epochs", runner=runner)
    os.kill(run.meta()["pid"], signal.SIGKILL)  # the Ray worker process that trains it
    assert runner.wait(run_id, timeout=WAIT) == "interrupted"
    meta = run.meta()
    assert "its Ray worker process died" in meta["error"] and "resumed from its last checkpoint" in meta["error"]
    done = run.load_checkpoint("last")["epoch"]
    assert 1 <= done < 12  # the kill landed mid-run
    runner.stop()

    capsys.readouterr()
    assert cli(["resume", run_id, "--runs-dir", str(store.root), "--executor", "ray", "--ray-address", cluster]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id} handed to the Ray cluster at {cluster}" in out and "completed" in out
    meta = run.meta()
    assert meta["status"] == "completed" and meta["resumed_from_epoch"] == done
    assert sorted(set(_epochs(run))) == list(range(1, 13)) and meta["epochs_done"] == 12


def test_a_four_run_sweep_completes_on_the_cluster(cluster, data_dir, store, runners):
    """The experiments issue's sweep (core.experiments, as ``python -m core sweep`` drives
    it), unchanged on Ray: four seeds, at most two at once (the cluster's two CPUs)."""
    from core.experiments import create_experiment, leaderboard, parse_grid, plan_sweep, run_experiment

    runner = _runner(runners, store)
    # (2 epochs: one-cycle over exactly 4 steps divides by zero inside torch's OneCycleLR)
    exp = create_experiment(store, plan_sweep(
        "breastmnist", parse_grid(["seed=0,1,2,3"]), model="medvcnn", data_dir=str(data_dir),
        fixed={"epochs": 2, "batch_size": 16, "augment": "none", "device": "cpu"}))
    most = 0

    def watch(snap):
        nonlocal most
        most = max(most, snap["counts"].get("running", 0))

    done = run_experiment(store, exp.id, runner, poll_s=0.2, progress=watch)
    board = leaderboard(store, done)
    assert done.status == "completed", done.error
    assert [r["status"] for r in board] == ["completed"] * 4, [r.get("error") for r in board]
    assert sorted(store.get(r["run_id"]).params()["seed"] for r in board) == [0, 1, 2, 3]
    assert 1 <= most <= 2  # the cluster's size set the concurrency
    assert len({store.get(r["run_id"]).meta()["ray_actor"] for r in board}) == 4


_DRIVER = """
import json, sys, time
from core.runs import JobRunner, RunStore
from core.runs.ray_executor import RayExecutor
store = RunStore(sys.argv[1])
runner = JobRunner(store, RayExecutor(sys.argv[2], env={"OMP_NUM_THREADS": "1"}))
run_id = runner.submit(json.loads(sys.argv[3]))
deadline = time.time() + 90
while not isinstance(store.get(run_id).meta().get("pid"), int) and time.time() < deadline:
    runner.poll()
    time.sleep(0.1)
print(run_id)
"""


def test_a_restarted_server_finds_its_runs_on_the_cluster(cluster, data_dir, store, runners):
    # A first "server" (its own Ray driver process) starts a run and goes away mid-run.
    params = _params(data_dir, epochs=6)
    out = subprocess.run([sys.executable, "-c", _DRIVER, str(store.root), cluster, json.dumps(params)],
                         capture_output=True, text=True, timeout=WAIT, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    run_id = out.stdout.split()[-1]
    assert store.get(run_id).meta()["status"] == "running"

    runner = _runner(runners, store)  # the restarted server: finds the detached actor again
    assert run_id in runner._jobs and runner.recover() == []
    assert runner.wait(run_id, timeout=WAIT) == "completed", store.get(run_id).meta().get("error")
    assert _epochs(store.get(run_id)) == list(range(1, 7))

    # A run whose actor no longer exists is marked interrupted, with the reason.
    gone = store.create_run(params)
    store.update_meta(gone.id, status="running", executor="ray", ray_actor=f"studio-run-{gone.id}-0000",
                      launched="2020-01-01T00:00:00+00:00", host="another-node")
    again = _runner(runners, store)
    assert gone.id not in again._jobs and gone.meta()["status"] == "interrupted"
    assert "resume" in gone.meta()["error"]


class _ElsewhereExecutor(RayExecutor):
    """A node that mounts the runs directory somewhere else (or not at all)."""

    def worker_run_dir(self, run):
        return f"/not-mounted-here/runs/{run.id}"


def test_a_node_without_the_run_directory_fails_the_run_with_the_shared_storage_message(
        cluster, data_dir, store, runners):
    runner = _runner(runners, store, _ElsewhereExecutor())
    run_id = runner.submit(_params(data_dir))
    assert runner.wait(run_id, timeout=WAIT) == "failed"
    error = store.get(run_id).meta()["error"]
    assert "cannot see the run directory /not-mounted-here/runs/" in error
    assert "shared by every node" in error and "same path" in error and "resume" in error


def test_choosing_ray_without_ray_installed_is_one_sentence(monkeypatch, store):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setenv("STUDIO_EXECUTOR", "ray")
    with pytest.raises(StudioError) as err:
        JobRunner(store)
    assert "Ray is not installed" in str(err.value) and "pip install -r requirements-ray.txt" in str(err.value)


def test_an_unreachable_cluster_is_one_sentence(cluster, data_dir, tmp_path, capsys):
    with pytest.raises(StudioError) as err:
        RayExecutor("127.0.0.1:1")
    assert str(err.value).startswith("no Ray cluster answers at 127.0.0.1:1")
    assert "ray start --head" in str(err.value)

    from core.cli import main as cli

    code = cli(["train", "--dataset", "breastmnist", "--data-dir", str(data_dir), "--model", "medvcnn",
                "--runs-dir", str(tmp_path / "runs"), "--executor", "ray", "--ray-address", "127.0.0.1:1"])
    err_text = capsys.readouterr().err
    assert code == 2 and err_text.startswith("error: no Ray cluster answers at 127.0.0.1:1")
    assert "Traceback" not in err_text and not list((tmp_path / "runs").glob("2*"))  # no run was made


def test_the_executor_is_chosen_by_the_environment(cluster, monkeypatch, store):
    monkeypatch.setenv("STUDIO_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    executor = JobRunner(store).executor
    assert isinstance(executor, RayExecutor) and executor.address == cluster
    assert executor.describe() == f"Ray cluster at {cluster}: 1 node, 2 CPUs, 0 GPUs"
    monkeypatch.setenv("STUDIO_EXECUTOR", "slurm")
    with pytest.raises(StudioError, match="executor 'slurm' is not known; set STUDIO_EXECUTOR"):
        make_executor()
    monkeypatch.delenv("STUDIO_EXECUTOR")
    assert make_executor().name == "local"


def test_the_sidebar_says_where_runs_train(cluster, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from studio import ui

    app = str(REPO / "studio" / "app.py")
    monkeypatch.setenv("STUDIO_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    try:
        at = AppTest.from_file(app, default_timeout=120).run()
        assert not at.exception and not at.error
        shown = [t.value for t in at.sidebar.text]
        assert f"Ray cluster at {cluster}: 1 node, 2 CPUs, 0 GPUs" in shown
    finally:
        ui._runner(ui._root()).stop()
        ui._runner.clear()

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    at = AppTest.from_file(app, default_timeout=120).run()
    errors = [e.value for e in at.sidebar.error]
    assert any(e.startswith("No Ray cluster answers at 127.0.0.1:1") for e in errors), errors
    assert not at.exception
