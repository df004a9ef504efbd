"""Faults of the foreground command line: a `python -m core train` killed outright (SIGKILL,
as the kernel's out-of-memory killer does) and found again by whoever opens the store next,
out-of-memory errors told in one sentence, and progress written as a line per epoch when
stdout is not a terminal. Every run trains on a tiny generated image folder."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

import core.models
from core.cli import main
from core.runs import RunStore
from core.runs.reaper import process_is_gone
from core.runs.worker import main as worker_main
from core.train import build_params, make_config, run_training
from core.train.oom import out_of_memory_message
from core.train.terminal_progress import TrainingProgress
from helpers_runs import write_dataset_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    """64 training images of the square task, 16 validation, 16 test (28 px, two classes)."""
    return write_dataset_folder(tmp_path_factory.mktemp("data") / "squares", {"train": 64, "val": 16, "test": 16})


def _env(runs: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "STUDIO_DEVICE": "cpu", "STUDIO_RUNS_DIR": str(runs)}


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------- 6. SIGKILL in the foreground
def test_killed_foreground_train_is_interrupted_when_the_store_opens_and_resume_finishes_it(
        tmp_path, squares, capsys):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--dataset", str(squares), "--model", "medvcnn", "--epochs", "25",
         "--batch-size", "4", "--runs-dir", str(runs)],
        cwd=REPO, env=_env(runs), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def first_epoch_done() -> bool:  # its line written and its checkpoint saved
            return any(runs.glob("*/checkpoints/last.pt"))

        _wait_for(lambda: proc.poll() is not None or first_epoch_done(), 120, "the first epoch")
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    run_id = run_dir.name
    # what the killed process left (read raw: opening a store would settle it): running, pid, start time
    meta = json.loads((run_dir / "meta.json").read_text())
    assert (meta["status"], meta["pid"], meta["executor"]) == ("running", proc.pid, "foreground")
    assert abs(meta["pid_created"] - psutil.Process().create_time()) > 0.5  # its own start time, not ours

    # any command that opens the store finds it dead: `runs` lists it interrupted
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"^{run_id}\s+interrupted\s", listing, re.M), listing
    store = RunStore(runs)
    meta = store.get(run_id).meta()
    done = meta["epochs_done"]
    assert meta["status"] == "interrupted" and 1 <= done < 25
    assert meta["error"].startswith(f"Interrupted after epoch {done} of 25: ")
    assert f"the process training it (pid {proc.pid}) ended without recording a final status" in meta["error"]
    assert meta["error"].endswith("it can be resumed from its last checkpoint.")

    # and resume finishes it, from where it stopped
    assert main(["resume", run_id, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"resuming run {run_id} after epoch {done}" in out and f"run {run_id} completed in" in out
    meta = store.get(run_id).meta()
    assert (meta["status"], meta["epochs_done"], meta["resumed_from_epoch"]) == ("completed", 25, done)
    assert sorted({e["epoch"] for e in store.get(run_id).metrics(kind="epoch")}) == list(range(1, 26))


def test_a_reused_pid_or_a_vanished_one_is_dead_but_the_recording_process_is_alive(tmp_path):
    store = RunStore(tmp_path / "runs")
    me = psutil.Process()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    cases = {  # name: (pid, pid_created)
        "alive": (me.pid, me.create_time()),
        "reused": (me.pid, me.create_time() - 3600.0),  # same pid, a process started an hour earlier
        "vanished": (gone.pid, 1.0),
        "minus one": (-1, None),
        "not a number": ("12", None),
        "launching": (None, None),  # a job runner is starting its worker: the runner decides
    }
    ids = {}
    for name, (pid, created) in cases.items():
        run = store.create_run({"model": "medvcnn", "dataset": "squares", "epochs": 3})
        store.update_meta(run.id, status="running", pid=pid, pid_created=created, launched="2999-01-01T00:00:00+00:00")
        ids[name] = run.id
    assert process_is_gone(me.pid, me.create_time()) is False and process_is_gone(gone.pid, None) is True

    reopened = RunStore(store.root)  # what a command or a page does
    status = {name: reopened.get(run_id).meta()["status"] for name, run_id in ids.items()}
    assert status == {"alive": "running", "reused": "interrupted", "vanished": "interrupted",
                      "minus one": "interrupted", "not a number": "interrupted", "launching": "running"}
    assert "before it finished its first epoch" in reopened.get(ids["reused"]).meta()["error"]
    # a cancel that was asked for and never honoured ends as cancelled, not interrupted
    run = store.create_run({"model": "medvcnn", "dataset": "squares", "epochs": 3})
    store.update_meta(run.id, status="running", pid=gone.pid, pid_created=1.0)
    run.request_cancel()
    assert RunStore(store.root).get(run.id).meta()["status"] == "cancelled"


def test_a_page_opened_after_a_foreground_run_died_shows_it_interrupted(tmp_path):
    from streamlit.testing.v1 import AppTest

    from studio import ui

    store = RunStore()  # $STUDIO_RUNS_DIR, as the pages use it
    run = store.create_run({"model": "medvcnn", "dataset": "squares", "epochs": 3}, name="killed in a terminal")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.update_meta(run.id, status="running", pid=gone.pid, pid_created=time.time() - 5, host=None, epoch=1)
    at = AppTest.from_file(str(REPO / "studio" / "app.py"), default_timeout=120)
    try:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        board = at.dataframe[0].value
        assert dict(zip(board["Run"], board["Status"])) == {"killed in a terminal": ui.status_label("interrupted")}
    finally:
        ui._runner(ui._root()).stop()
    assert run.meta()["status"] == "interrupted" and "can be resumed" in run.meta()["error"]


# ------------------------------------------------------------------- 7. out of memory
CUDA_TEXT = ("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which "
             "1.25 GiB is free. Including non-PyTorch memory, this process has 77.89 GiB memory in use.")
CPU_TEXT = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 205520896000 bytes. Error code 12 (Cannot allocate memory)")
OOM_CASES = {
    "cuda": (lambda: torch.cuda.OutOfMemoryError(CUDA_TEXT), "GPU memory"),
    "cpu allocator": (lambda: RuntimeError(CPU_TEXT), "memory (RAM)"),
    "python": (lambda: MemoryError(), "memory (RAM)"),
}
RAW = ("Traceback", "Tried to allocate", "DefaultCPUAllocator", "alloc_cpu", "enforce fail", "MemoryError")


@pytest.fixture
def forward_runs_out(monkeypatch):
    """Makes every model the trainer builds raise ``exc`` from its forward pass."""
    real = core.models.create_model

    def install(make_exc):
        def create_model(*args, **kwargs):
            model = real(*args, **kwargs)

            def forward(*a, **k):
                raise make_exc()

            model.forward = forward
            return model

        monkeypatch.setattr(core.models, "create_model", create_model)

    return install


@pytest.mark.parametrize("case", list(OOM_CASES))
def test_out_of_memory_in_cli_train_is_one_line_with_what_to_lower(case, tmp_path, squares, capsys,
                                                                     forward_runs_out):
    make_exc, what = OOM_CASES[case]
    forward_runs_out(make_exc)
    runs = tmp_path / "runs"
    assert main(["train", "--dataset", str(squares), "--model", "medvcnn", "--batch-size", "8", "--epochs", "2",
                 "--runs-dir", str(runs)]) == 1
    out, err = capsys.readouterr()
    [run] = [RunStore(runs).get(r["run_id"]) for r in RunStore(runs).list_runs()]
    expected = (f"training ran out of {what} (medvcnn at 28 px, batch size 8); start a new run with a smaller "
                "batch size (try 4), a smaller image size or a smaller model")
    meta = run.meta()
    assert (meta["status"], meta["error"]) == ("failed", expected)
    assert out.splitlines()[-1] == f"run {run.id} ended failed: {expected}"
    assert (out + err).count("ran out of") == 1  # said once, not once by the worker and once by the CLI
    assert not [raw for raw in RAW if raw in out + err], out + err


def test_out_of_memory_in_a_background_worker_keeps_the_log_to_one_sentence(tmp_path, squares, capfd, caplog,
                                                                              forward_runs_out):
    forward_runs_out(OOM_CASES["cuda"][0])
    store = RunStore(tmp_path / "runs")
    cfg = make_config(str(squares), "medvcnn", "default", image_size=28, epochs=1, batch_size=512, device="cpu")
    run = store.create_run(build_params(cfg))
    assert worker_main([str(run.dir)], train=run_training) == 1
    expected = ("training ran out of GPU memory (medvcnn at 28 px, batch size 512); start a new run with a smaller "
                "batch size (try 256), a smaller image size or a smaller model")
    assert run.meta()["error"] == expected
    # worker.log gets the worker's stderr (no traceback printed) and its log records
    err = capfd.readouterr().err
    logged = [r.getMessage() for r in caplog.records if r.name == "core.runs.worker"]
    assert [m for m in logged if "failed" in m] == [f"run {run.id} failed: {expected}"]
    assert not [raw for raw in RAW if raw in err + "\n".join(logged)], err
    assert [r["error"] for r in store.list_runs()] == [run.meta()["error"]]


def test_out_of_memory_outside_training_and_other_errors(tmp_path, capsys, monkeypatch):
    import core.train.evaluation

    def eval_runs_out(*args, **kwargs):
        raise RuntimeError(CPU_TEXT)

    store = RunStore(tmp_path / "runs")
    run = store.create_run({"model": "medvcnn", "dataset": "squares", "epochs": 1})
    monkeypatch.setattr(core.train.evaluation, "reevaluate_run", eval_runs_out)
    assert main(["eval", run.id, "--runs-dir", str(store.root)]) == 1
    err = capsys.readouterr().err
    assert err == ("error: `eval` ran out of memory (RAM); close other programs or training runs that use it and try "
                   "again, or use a machine with more memory.\n")
    # anything else is not dressed up as memory
    assert out_of_memory_message(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert out_of_memory_message(ValueError("out of memory")) is None
    wrapped = RuntimeError("DataLoader worker failed")
    wrapped.__cause__ = MemoryError()
    assert out_of_memory_message(wrapped).startswith("training ran out of memory (RAM); start a new run")


_UNDER_A_CAP = """
import resource, sys
import torch
import core.models
from core.cli import main

real = core.models.create_model

def create_model(*args, **kwargs):
    model = real(*args, **kwargs)
    def forward(x):
        return torch.ones(2**33, dtype=torch.uint8)  # 8 GiB: past the cap below
    model.forward = forward
    return model

core.models.create_model = create_model
vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 2 * 2**30, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_real_allocator_failure_under_a_memory_cap(tmp_path, squares):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-c", _UNDER_A_CAP, "train", "--dataset", str(squares), "--model", "medvcnn",
         "--epochs", "1", "--batch-size", "8", "--runs-dir", str(runs)],
        cwd=REPO, env=_env(runs), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[-1].endswith(
        "ended failed: training ran out of memory (RAM) (medvcnn at 28 px, batch size 8); start a new run with a "
        "smaller batch size (try 4), a smaller image size or a smaller model")
    assert not [raw for raw in RAW if raw in proc.stdout + proc.stderr], proc.stdout + proc.stderr


# ------------------------------------------------------------------- 13. progress without a terminal
def test_train_with_stdout_to_a_pipe_prints_one_line_per_epoch_and_no_carriage_returns(tmp_path, squares):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "core", "train", "--dataset", str(squares), "--model", "medvcnn", "--epochs", "3",
         "--batch-size", "4", "--runs-dir", str(runs)],
        cwd=REPO, env=_env(runs), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"\r" not in proc.stdout and b"\r" not in proc.stderr
    lines = proc.stdout.decode().splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(re.fullmatch(r"epoch \d/3: train loss [\d.]+, val loss [\d.]+, val ACC [\d.]+, val AUC [\d.]+, "
                            r"[\d.]+ s", line) for line in epochs), epochs
    assert len(lines) == 5 and lines[-1].startswith("run ") and " completed in " in lines[-1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_drawn_only_when_stdout_and_its_stream_are_terminals():
    step = {"kind": "step", "epoch": 1, "step": 2, "batch": 2, "steps_per_epoch": 4, "loss": 0.5}
    epoch = {"kind": "epoch", "epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_acc": 0.9, "val_auc": None,
             "epoch_seconds": 1.25}
    out, bar = _Terminal(), _Terminal()
    with TrainingProgress(2, out=out, bar_stream=bar) as progress:
        progress.update(step)
        progress.update(epoch)
    assert progress.use_bar and "\r" in bar.getvalue() and out.getvalue() == ""
    piped, bar = io.StringIO(), _Terminal()
    with TrainingProgress(2, out=piped, bar_stream=bar) as progress:
        progress.update(step)
        progress.update(epoch)
    assert not progress.use_bar and bar.getvalue() == ""
    assert piped.getvalue() == "epoch 1/2: train loss 0.500, val loss 0.400, val ACC 0.900, val AUC n/a, 1.2 s\n"
