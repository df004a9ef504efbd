"""One run on two processes (DDP over gloo on the CPU) on generated data: torchrun and the
job runner's ``processes`` setting, memory-mapped and in-memory batches, the weights of both
ranks, the loss curve against one process, cancel and resume."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from core.errors import StudioError
from core.runs import JobRunner, LocalProcessExecutor, RunStore
from core.runs.worker import main as worker_main
from core.train import build_params, make_config, run_training
from core.train.distributed import Group, processes_of, weights_digest
from helpers_runs import write_square_npz

REPO = Path(__file__).resolve().parent.parent
WAIT = 150.0
EPOCHS = 3
NO_BATCHNORM = "snet"  # convolutions, dense layers and an LSTM: no BatchNorm, no dropout


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist-data")
    write_square_npz(root / "breastmnist.npz", (96, 16, 16))  # 6 global batches of 16 per epoch
    return root


def _cfg(data_dir, epochs=EPOCHS, model="medvcnn", **kw):
    return make_config("breastmnist", model, "default", data_dir=str(data_dir), epochs=epochs, batch_size=16,
                       seed=0, device="cpu", augment="none", **kw)


def _last_weights(run) -> dict:
    last = run.load_checkpoint("last")
    return last.get("train_state_dict") or last["state_dict"]


def _files(run) -> list[str]:
    return sorted(p.relative_to(run.dir).as_posix() for p in run.dir.rglob("*") if p.is_file())


def _followers_of(run) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if any("follower_main" in part for part in cmd) and str(run.dir) in cmd:
            out.append(proc)
    return out


def test_torchrun_trains_one_run_on_two_processes_like_one_process(data_dir, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "STUDIO_DEVICE": "cpu",
           "STUDIO_MEMMAP_ABOVE_MB": "0.001"}  # the ranks read their batches from memory-mapped files
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "core", "train", "--dataset", "breastmnist", "--data-dir", str(data_dir), "--model", NO_BATCHNORM,
           "--epochs", str(EPOCHS), "--batch-size", "16", "--seed", "0", "--augment", "none", "--device", "cpu",
           # fp32: on a CPU with bf16 units 'auto' is bf16, whose rounding differs between a batch of
           # 8 per rank and 16 in one process (0.4 % apart here), which is not what this compares
           "--precision", "fp32", "--runs-dir", str(runs)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (data_dir / ".cache" / "breastmnist_28").is_dir()  # the batches came from disk
    store = RunStore(runs)
    [row] = store.list_runs()  # one run, made by rank 0 alone
    two = store.get(row["run_id"])
    assert f"run {two.id} completed" in out.stdout
    meta = two.meta()
    assert meta["status"] == "completed" and two.params()["processes"] == 2
    assert [e["epoch"] for e in two.metrics(kind="epoch")] == [1, 2, 3]  # one line per epoch: rank 0 writes

    # the weights of both ranks are identical, and they are the ones in the checkpoint
    dist = meta["distributed"]
    assert dist["processes"] == 2 and dist["backend"] == "gloo"
    assert dist["weights_sha1"][0] == dist["weights_sha1"][1] == weights_digest(_last_weights(two))
    assert two.predictions()["test_scores"].shape == (16, 2) and two.eval()["test"]["n"] == 16

    # One process, same global batch size, in memory. Without BatchNorm (its statistics are
    # per rank) and dropout, the two runs differ only in how the gradient sums are rounded.
    one_store = RunStore(tmp_path / "one")
    one = one_store.create_run(build_params(_cfg(data_dir, model=NO_BATCHNORM, precision="fp32")))
    assert worker_main([str(one.dir)], train=run_training) == 0
    a = np.array([e["train_loss"] for e in one.metrics(kind="epoch")])
    b = np.array([e["train_loss"] for e in two.metrics(kind="epoch")])
    assert a[-1] < a[0] and b[-1] < b[0]  # both learn
    np.testing.assert_allclose(b, a, rtol=1e-5)  # measured: 6e-8 (2 cores, torch 2 CPU)
    np.testing.assert_allclose([e["val_loss"] for e in two.metrics(kind="epoch")],
                               [e["val_loss"] for e in one.metrics(kind="epoch")], rtol=1e-5)
    w1, w2 = _last_weights(one), _last_weights(two)
    assert list(w1) == list(w2)
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5, msg=name)

    # only rank 0 wrote: the same files as the one-process run, and no line twice
    assert _files(two) == _files(one)
    assert len(two.metrics(kind="step")) == len(one.metrics(kind="step"))
    assert len(two.metrics_path.read_text().splitlines()) == len(one.metrics_path.read_text().splitlines())


def test_a_two_process_run_through_the_job_runner_cancels_and_resumes(data_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, LocalProcessExecutor(env={"OMP_NUM_THREADS": "1"}), max_concurrent=1,
                       poll_interval=0.1)
    params = {**build_params(_cfg(data_dir, epochs=12)), "processes": 2}
    run_id = runner.submit(params)
    run = store.get(run_id)
    deadline = time.monotonic() + WAIT
    while not (run.metrics(kind="epoch") and run.last_checkpoint.exists()):
        assert time.monotonic() < deadline, "the first epoch never came"
        runner.poll()
        time.sleep(0.05)
    assert len(_followers_of(run)) == 1  # the worker is rank 0, with one follower
    assert runner.cancel(run_id) == "running"
    assert runner.wait(run_id, timeout=WAIT) == "cancelled", (run.meta().get("error"), run.log_path.read_text()[-3000:])
    done = run.load_checkpoint("last")["epoch"]
    assert 1 <= done < 12 and run.meta()["stop_reason"] == "cancelled by the user"
    psutil.wait_procs(_followers_of(run), timeout=20)
    assert _followers_of(run) == []  # the follower stopped with rank 0

    # resume: both processes continue from the last checkpoint to the planned end
    runner.submit_existing(run_id)
    assert runner.wait(run_id, timeout=3 * WAIT) == "completed", run.meta().get("error")
    meta = run.meta()
    assert meta["resumed_from_epoch"] == done and meta["epochs_done"] == 12
    assert sorted({e["epoch"] for e in run.metrics(kind="epoch")}) == list(range(1, 13))
    assert meta["distributed"]["weights_sha1"][0] == meta["distributed"]["weights_sha1"][1]


def test_each_rank_takes_its_own_share_of_every_batch():
    idx = torch.randperm(50)[:16]
    shares = [Group(r, 3, r, torch.device("cpu"), "gloo").share(idx) for r in range(3)]
    assert [len(s) for s in shares] == [6, 5, 5]
    assert sorted(torch.cat(shares).tolist()) == sorted(idx.tolist())


def test_the_processes_setting_is_checked(data_dir, tmp_path, capsys):
    assert processes_of({}) == 1 and processes_of({"processes": 4}) == 4
    for bad in (0, -2, 1000, 1.5, "2", True):
        with pytest.raises(StudioError, match="processes must be a whole number from 1 to 64"):
            processes_of({"processes": bad})
    from core.cli import main as cli

    code = cli(["train", "--dataset", "breastmnist", "--data-dir", str(data_dir), "--model", "medvcnn",
                "--processes", "0", "--runs-dir", str(tmp_path / "runs")])
    assert code == 2 and "processes must be a whole number from 1 to 64" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("2*"))
