"""Faults while training and in the runs directory: a full disk during a checkpoint or metrics
write inside a real (small, synthetic) training run, a runs directory that cannot be
written, and run directories deleted or edited by hand under the index and the pages."""

from __future__ import annotations

import builtins
import io
import errno
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import core.atomic
import core.runs.run
from core.errors import StudioError
from core.evaluate import evaluate_predictions
from core.runs import RunStore
from core.runs.worker import main as worker_main
from core.train import build_params, make_config, run_training
from helpers_runs import write_dataset_folder

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".creating-", ".deleting-"))]


@pytest.fixture
def small_run(tmp_path):
    """A queued two-epoch run of MedvCNN on a tiny synthetic image folder (seconds on a CPU)."""
    folder = write_dataset_folder(tmp_path / "squares", {"train": 16, "val": 8, "test": 8})
    store = RunStore(tmp_path / "runs")
    # batch 4: four steps an epoch (onecycle divides by zero with four steps in all: reported)
    cfg = make_config(str(folder), "medvcnn", "default", image_size=28, epochs=2, batch_size=4, device="cpu")
    return store, store.create_run(build_params(cfg))


class _FullDiskForCheckpoints:
    """Stands in for ``os`` and ``tempfile`` inside core.atomic: the first ``allowed``
    checkpoint writes succeed, every later one fails with ENOSPC after a few bytes (the
    disk filled up); meta.json and eval.json still fit."""

    def __init__(self, allowed: int):
        self.allowed = allowed
        self.checkpoint_writes = 0
        self.paths: dict[int, str] = {}

    # -- tempfile --
    def mkstemp(self, *args, **kwargs):
        fd, path = tempfile.mkstemp(*args, **kwargs)
        self.paths[fd] = path
        return fd, path

    # -- os --
    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode="r", *args, **kwargs):
        fh = os.fdopen(fd, mode, *args, **kwargs)
        if not Path(self.paths.pop(fd, "")).name.startswith((".best.pt.", ".last.pt.")):
            return fh
        self.checkpoint_writes += 1
        return _Failing(fh) if self.checkpoint_writes > self.allowed else fh


class _Failing:
    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        self._fh.write(data[:16])
        raise _enospc()

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def test_full_disk_during_a_checkpoint_write_fails_the_run_and_keeps_the_last_good_files(small_run, monkeypatch):
    store, run = small_run
    disk = _FullDiskForCheckpoints(allowed=2)  # epoch 1 writes best.pt and last.pt; epoch 2's first fails
    monkeypatch.setattr(core.atomic, "os", disk)
    monkeypatch.setattr(core.atomic, "tempfile", disk)
    assert worker_main([str(run.dir)], train=run_training) == 1
    monkeypatch.undo()

    assert disk.checkpoint_writes == 3
    meta = run.meta()
    assert meta["status"] == "failed"
    assert meta["error"].startswith("the disk is full: ") and "could not be written (no space left on the device)" in meta["error"]
    assert "free disk space, then resume the run" in meta["error"]
    # the checkpoints of epoch 1 are intact and load
    assert run.load_checkpoint("best")["epoch"] == 1
    assert run.load_checkpoint("last")["epoch"] == 1
    assert _leftovers(store.root) == []
    # the index still lists the run, with the reason
    [row] = RunStore(store.root).list_runs()
    assert row["run_id"] == run.id and row["status"] == "failed" and "disk is full" in row["error"]

    # with space again, resuming finishes it from the last good checkpoint
    store.update_meta(run.id, status="queued", error=None)
    assert worker_main([str(run.dir)], train=run_training) == 0
    meta = run.meta()
    assert meta["status"] == "completed" and meta["resumed_from_epoch"] == 1 and meta["epochs_done"] == 2
    assert run.load_checkpoint("last")["epoch"] == 2


def test_full_disk_during_a_metrics_write_fails_the_run_and_keeps_what_was_written(small_run, monkeypatch):
    store, run = small_run
    real_open = builtins.open
    state = {"epoch_lines": 0, "failed": 0}

    class FullAfterFirstEpoch:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            if state["epoch_lines"] >= 1:  # the disk fills up after epoch 1's line
                state["failed"] += 1
                self._fh.write(data[: len(data) // 2])  # half a line reaches the disk
                raise _enospc()
            state["epoch_lines"] += b'"kind": "epoch"' in data
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def fake_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FullAfterFirstEpoch(fh) if str(path).endswith("metrics.jsonl") else fh

    # append_metrics opens metrics.jsonl with the built-in open, looked up in its module
    monkeypatch.setattr(core.runs.run, "open", fake_open, raising=False)
    assert worker_main([str(run.dir)], train=run_training) == 1
    monkeypatch.undo()

    assert state["failed"] == 1
    meta = run.meta()
    assert meta["status"] == "failed"
    assert meta["error"].startswith("the disk is full: metrics.jsonl could not be written")
    # the half-written line is skipped; epoch 1 is there, and its checkpoint loads
    assert [e["epoch"] for e in run.metrics(kind="epoch")] == [1]
    assert not run.metrics_path.read_bytes().endswith(b"\n")
    assert run.load_checkpoint("best")["epoch"] == 1
    assert [r["status"] for r in store.list_runs()] == ["failed"]
    # the next line written starts on a fresh line, so only the fragment is lost
    run.append_metrics({"kind": "note", "epoch": 1})
    assert run.metrics(kind="note")[0]["epoch"] == 1


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "free disk space"), (errno.EACCES, "fix permissions")])
def test_unwritable_runs_directory_refuses_a_new_run_and_changes_nothing(tmp_path, monkeypatch, code, advice):
    # Tests run as root, where chmod does not stop writes: the failure is made in core.atomic.
    store = RunStore(tmp_path / "runs")
    kept = store.create_run({"model": "medvcnn", "dataset": "breastmnist", "epochs": 1})
    before = store.list_runs()

    class Refusing:
        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, *args, **kwargs):
            os.close(fd)
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(core.atomic, "os", Refusing())
    with pytest.raises(StudioError, match=rf"^cannot create a run in {store.root} .*; free disk space or fix permissions$") as err:
        store.create_run({"model": "medvcnn", "dataset": "breastmnist", "epochs": 1})
    monkeypatch.undo()
    assert advice in str(err.value)
    assert store.list_runs() == before and kept.meta()["status"] == "queued"
    assert sorted(p.name for p in store.root.iterdir() if not p.name.startswith("index.sqlite")) == [kept.id]


# ---------------------------------------------------------------------------- hand-edited runs
def _completed(store: RunStore, name: str, seed: int) -> str:
    cfg = make_config("breastmnist", "medvcnn", "default", image_size=28, epochs=2, seed=seed)
    run = store.create_run(build_params(cfg), name=name)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    p1 = np.clip(labels * 0.6 + rng.uniform(0, 0.4, 60), 0, 1)
    ev = evaluate_predictions(np.stack([1 - p1, p1], axis=1), labels, "binary", ["malignant", "normal, benign"])
    run.write_eval({"val": ev, "test": ev})
    run.append_metrics({"kind": "epoch", "epoch": 1, "step": 3, "train_loss": 0.6, "val_loss": 0.7, "val_acc": 0.6,
                        "val_auc": 0.65, "lr": 1e-3})
    store.update_meta(run.id, status="completed", epochs_done=1, train_seconds=5.0, params_count=1000,
                      task="binary", class_names=["malignant", "normal, benign"], test_acc=ev["acc"],
                      test_auc=ev["auc"])
    return run.id


@pytest.fixture
def damaged(tmp_path, monkeypatch):
    """Five runs: one healthy, one deleted by hand, one with garbage meta.json, one whose
    meta.json is valid JSON of the wrong shape, one without eval.json."""
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    store = RunStore(root)
    ids = {name: _completed(store, name, seed) for seed, name in
           enumerate(["healthy", "deleted", "garbage meta", "list meta", "no eval"])}
    store.list_runs()  # the index knows all five
    shutil.rmtree(root / ids["deleted"])
    (root / ids["garbage meta"] / "meta.json").write_text("{\"status\": \"compl")
    (root / ids["list meta"] / "meta.json").write_text(json.dumps(["status", "completed"]))
    (root / ids["no eval"] / "eval.json").unlink()
    return store, ids


def test_hand_edited_run_directories_do_not_break_the_index(damaged):
    store, ids = damaged
    rows = {r["run_id"]: r for r in store.list_runs()}
    assert ids["deleted"] not in rows and len(rows) == 4
    assert rows[ids["healthy"]]["status"] == "completed" and rows[ids["healthy"]]["error"] is None
    for broken in ("garbage meta", "list meta"):
        assert rows[ids[broken]]["status"] == "unknown" and "meta.json" in rows[ids[broken]]["error"]
        assert rows[ids[broken]]["model"] == "medvcnn"  # params.json could still be read
    assert "holds a JSON list, not an object" in rows[ids["list meta"]]["error"]
    assert rows[ids["no eval"]]["status"] == "completed" and rows[ids["no eval"]]["test_auc"] is None
    # a new store on the same directory (a restarted server) rebuilds the same rows
    (store.root / "index.sqlite").unlink()
    assert {r["run_id"]: r for r in RunStore(store.root).list_runs()} == rows


@pytest.mark.parametrize("page", ["compare", "home"])
def test_pages_render_over_hand_edited_run_directories(damaged, page):
    from studio import ui

    store, ids = damaged
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != "home":
        at.switch_page(f"../pages/{page}.py").run()
    try:
        assert not at.exception, [e.value for e in at.exception]
        shown = "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning])
        assert "Traceback" not in shown
        board = at.dataframe[0].value
        names = set(board["Run"])
        assert {"healthy", "no eval"} <= names and "deleted" not in names
        if page == "compare":
            problems = dict(zip(board["Run"], board["Problem"]))
            assert problems["healthy"] == "" and "meta.json" in problems[ids["garbage meta"]]
    finally:
        ui._runner(ui._root()).stop()


def test_sigterm_landing_inside_torch_save_still_marks_the_run_interrupted(small_run):
    """The SIGTERM handler's exception lands in whatever Python runs next; inside torch.save
    that is the file's write callback, and torch hands it on as a RuntimeError (a Ray worker
    terminated mid-checkpoint was once marked failed for it)."""
    store, run = small_run

    class SignalsOnThirdWrite(io.RawIOBase):
        writes = 0

        def writable(self):
            return True

        def write(self, data):
            SignalsOnThirdWrite.writes += 1
            if SignalsOnThirdWrite.writes == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return len(data)

    def checkpoint_then_signal(run, store):
        torch.save({"weights": torch.zeros(100_000)}, SignalsOnThirdWrite())
        raise AssertionError("torch.save should have been stopped by the SIGTERM")

    assert worker_main([str(run.dir)], train=checkpoint_then_signal) == 143
    meta = run.meta()
    assert meta["status"] == "interrupted", meta.get("error")
    assert "its worker process was stopped (SIGTERM)" in meta["error"]
    # the next run in this process is not taken for a terminated one
    store.update_meta(run.id, status="queued", error=None)

    def fails(run, store):
        raise ValueError("a real fault")

    assert worker_main([str(run.dir)], train=fails) == 1
    assert run.meta()["status"] == "failed" and "a real fault" in run.meta()["error"]
