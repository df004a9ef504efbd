"""The run store: directories, atomic files, the SQLite index and its recovery."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import core.atomic
from core.errors import StudioError
from core.runs import Run, RunStore, new_run_id, validate_run_id


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def _params(model="medvcnn", dataset="breastmnist", **extra):
    return {"model": model, "dataset": dataset, "image_size": 28, "seed": 0, "epochs": 3, **extra}


def _leftovers(root: Path) -> list[str]:
    """Temp files or half-made directories anywhere under root."""
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".creating-", ".deleting-"))]


# -- creating and reading -------------------------------------------------------------------
def test_create_run_writes_params_and_queued_meta(store):
    run = store.create_run(_params(), name="baseline", owner="ana")

    assert re.fullmatch(r"\d{8}-\d{6}-medvcnn-breastmnist-[0-9a-f]{4}", run.id)
    assert run.dir == store.root / run.id
    assert json.loads(run.params_path.read_text()) == _params()
    meta = run.meta()
    assert meta["status"] == "queued"
    assert meta["name"] == "baseline" and meta["owner"] == "ana" and meta["tags"] == []
    assert meta["created"].endswith("+00:00") and meta["started"] is None and meta["pid"] is None
    assert meta["epochs"] == 3
    assert store.get(run.id) == run
    assert store.get(run.id).params() == _params()
    [row] = store.list_runs()
    assert (row["run_id"], row["status"], row["dataset"], row["model"], row["image_size"], row["seed"]) == (
        run.id, "queued", "breastmnist", "medvcnn", 28, 0)
    assert row["owner"] == "ana" and row["name"] == "baseline"


def test_run_paths_follow_the_layout(store):
    run = store.create_run(_params())
    d = run.dir
    assert (run.params_path, run.meta_path, run.metrics_path) == (d / "params.json", d / "meta.json", d / "metrics.jsonl")
    assert (run.best_checkpoint, run.last_checkpoint) == (d / "checkpoints/best.pt", d / "checkpoints/last.pt")
    assert run.checkpoint_dir == d / "checkpoints"
    assert (run.eval_path, run.predictions_path) == (d / "eval.json", d / "predictions.npz")


def test_store_defaults_to_the_environment_runs_dir(tmp_path):
    # conftest points STUDIO_RUNS_DIR at tmp_path / "runs"
    assert RunStore().root == (tmp_path / "runs").resolve()


def test_params_are_written_once(store):
    run = store.create_run(_params())
    with pytest.raises(StudioError, match="already written"):
        run.write_params({"model": "other"})
    assert run.params() == _params()


def test_run_ids_are_sanitised_and_sortable():
    from datetime import datetime, timezone

    early = new_run_id({"model": "resnet18.tv/../x", "dataset": {"name": "blood mnist"}},
                       now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    late = new_run_id({"model": "a"}, now=datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))
    assert re.fullmatch(r"20260102-030405-resnet18-tv-x-blood-mnist-[0-9a-f]{4}", early)
    assert validate_run_id(early) == early
    assert early < late


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "/etc/passwd", "", "x y", "ü", None, "a" * 129])
def test_user_run_ids_cannot_escape_the_runs_dir(store, bad):
    with pytest.raises(StudioError, match="not a run id"):
        store.get(bad)


def test_unknown_run_says_how_to_find_runs(store):
    with pytest.raises(StudioError) as err:
        store.get("nope")
    assert str(err.value) == f"no run 'nope' in {store.root}; `python -m core runs` lists them"


# -- meta, names, tags, deletion -------------------------------------------------------------
def test_update_meta_merges_and_updates_the_index(store):
    run = store.create_run(_params())
    store.update_meta(run.id, status="running", pid=123, epoch=1)
    merged = store.update_meta(run.id, progress=0.5, device="cpu")

    meta = run.meta()
    assert meta == merged
    assert (meta["status"], meta["pid"], meta["epoch"], meta["progress"], meta["device"]) == ("running", 123, 1, 0.5, "cpu")
    assert meta["created"] and meta["name"] == run.id  # untouched fields stay
    [row] = store.list_runs()
    assert (row["status"], row["epochs_done"], row["device"]) == ("running", 1, "cpu")
    with pytest.raises(ValueError, match="status"):
        store.update_meta(run.id, status="exploded")
    assert run.meta()["status"] == "running"


def test_update_meta_if_only_writes_from_the_expected_status(store):
    run = store.create_run(_params())
    assert store.update_meta_if(run.id, ["running"], status="completed") is None
    assert run.meta()["status"] == "queued"
    assert store.update_meta_if(run.id, ["queued"], status="running")["status"] == "running"


def test_concurrent_meta_updates_lose_nothing(store):
    run = store.create_run(_params())

    def writer(k: int) -> None:
        for i in range(15):
            store.update_meta(run.id, **{f"field_{k}_{i}": i})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meta = run.meta()
    assert all(meta[f"field_{k}_{i}"] == i for k in range(4) for i in range(15))


def test_rename_and_tags(store):
    run = store.create_run(_params())
    other = store.create_run(_params())
    store.rename(run.id, "  my   best run ")
    assert store.set_tags(run.id, [" baseline", "cpu", "baseline", ""]) == ["baseline", "cpu"]

    assert run.meta()["name"] == "my best run"
    assert run.meta()["tags"] == ["baseline", "cpu"]
    assert [r["run_id"] for r in store.list_runs(tag="cpu")] == [run.id]
    rows = {r["run_id"]: r for r in store.list_runs()}
    assert rows[run.id]["name"] == "my best run" and rows[run.id]["tags"] == ["baseline", "cpu"]
    assert rows[other.id]["tags"] == []
    with pytest.raises(StudioError):
        store.rename(run.id, "   ")


def test_delete_removes_directory_and_row(store):
    keep = store.create_run(_params())
    gone = store.create_run(_params())
    store.delete(gone.id)

    assert not gone.dir.exists()
    assert [r["run_id"] for r in store.list_runs()] == [keep.id]
    assert store.index.get(gone.id) is None
    with pytest.raises(StudioError, match="no run"):
        store.get(gone.id)
    store.update_meta(keep.id, status="running")
    with pytest.raises(StudioError, match="cancel it first"):
        store.delete(keep.id)
    assert keep.dir.exists()
    assert _leftovers(store.root) == []


def test_writes_leave_no_temporary_files(store):
    run = store.create_run(_params())
    store.update_meta(run.id, status="running")
    run.append_metrics({"kind": "epoch", "epoch": 1})
    run.write_eval({"val": {}, "test": {"acc": 0.5}})
    run.write_predictions(test_scores=np.zeros((2, 2)))
    run.save_checkpoint("last", {"epoch": 1})
    run.request_cancel()
    assert _leftovers(store.root) == []
    assert sorted(p.name for p in run.dir.iterdir()) == [
        "cancel.request", "checkpoints", "eval.json", "meta.json", "metrics.jsonl", "params.json", "predictions.npz"]


# -- metrics, eval, predictions, checkpoints -------------------------------------------------------
def test_metrics_append_and_a_malformed_trailing_line_is_skipped(store):
    run = store.create_run(_params())
    assert run.metrics() == []
    run.append_metrics({"kind": "step", "epoch": 1, "step": 5, "loss": 0.9})
    run.append_metrics({"kind": "epoch", "epoch": 1, "step": 10, "val_auc": 0.7, "time": 100.0})
    run.append_metrics({"kind": "step", "epoch": 2, "step": 15, "loss": np.float32(0.5)})

    assert [r["step"] for r in run.metrics()] == [5, 10, 15]
    assert run.metrics(kind="epoch") == [{"kind": "epoch", "epoch": 1, "step": 10, "val_auc": 0.7, "time": 100.0}]
    assert isinstance(run.metrics()[0]["time"], float)  # added when absent
    assert run.metrics()[2]["loss"] == 0.5

    with open(run.metrics_path, "ab") as fh:  # a write cut short by a kill
        fh.write(b'{"kind": "step", "epo')
    assert [r["step"] for r in run.metrics()] == [5, 10, 15]
    run.append_metrics({"kind": "epoch", "epoch": 2, "step": 20})
    assert [r["step"] for r in run.metrics()] == [5, 10, 15, 20]
    assert len(run.metrics_path.read_text().splitlines()) == 5


def test_eval_round_trip_feeds_the_index(store):
    run = store.create_run(_params())
    assert run.eval() is None
    evaluation = {"val": {"acc": 0.8, "auc": 0.81}, "test": {"acc": 0.75, "auc": 0.9, "macro": {"f1": 0.66}}}
    run.write_eval(evaluation)
    store.update_meta(run.id, params_count=1234, train_seconds=12.5, latency_ms=0.4)

    assert run.eval() == evaluation
    [row] = store.list_runs()
    assert (row["test_acc"], row["test_auc"], row["test_f1"], row["val_acc"], row["val_auc"]) == (0.75, 0.9, 0.66, 0.8, 0.81)
    assert (row["params_count"], row["train_seconds"], row["latency_ms"]) == (1234, 12.5, 0.4)


def test_predictions_round_trip(store):
    run = store.create_run(_params())
    assert run.predictions() is None
    scores = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0])
    run.write_predictions(test_scores=scores, test_labels=labels, val_scores=scores[:2], val_labels=labels[:2])

    got = run.predictions()
    assert sorted(got) == ["test_labels", "test_scores", "val_labels", "val_scores"]
    np.testing.assert_array_equal(got["test_scores"], scores)
    np.testing.assert_array_equal(got["test_labels"], labels)
    assert got["test_scores"].dtype == np.float32
    with pytest.raises(TypeError, match="Python objects"):
        run.write_predictions(test_scores=np.array([{"a": 1}], dtype=object))
    np.testing.assert_array_equal(run.predictions()["val_labels"], labels[:2])


def test_checkpoint_round_trip(store):
    run = store.create_run(_params())
    model = torch.nn.Linear(3, 2)
    ckpt = {"model": model.state_dict(), "epoch": 4, "model_args": {"in_channels": 1, "num_classes": 2},
            "class_names": ["benign", "malignant"], "best_metric": 0.91}
    path = run.save_checkpoint("best", ckpt)

    assert path == run.best_checkpoint
    loaded = run.load_checkpoint("best")
    assert loaded["epoch"] == 4 and loaded["class_names"] == ["benign", "malignant"]
    assert loaded["model_args"] == {"in_channels": 1, "num_classes": 2}
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded["model"][key], tensor)
    with pytest.raises(StudioError, match="no last checkpoint"):
        run.load_checkpoint("last")
    with pytest.raises(ValueError):
        run.save_checkpoint("middle", ckpt)


class _Plain:
    def __init__(self):
        self.weights = [1, 2, 3]


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_carrying_pickled_code_is_refused(store, tmp_path):
    run = store.create_run(_params())
    marker = tmp_path / "pwned"
    run.checkpoint_dir.mkdir()

    torch.save({"model": {}, "payload": _Evil(marker)}, run.best_checkpoint)
    with pytest.raises(StudioError, match="could run code"):
        run.load_checkpoint("best")
    assert not marker.exists()

    run.last_checkpoint.write_bytes(pickle.dumps({"payload": _Evil(marker)}))  # a bare pickle, not a zip
    with pytest.raises(StudioError):
        run.load_checkpoint("last")
    assert not marker.exists()

    torch.save({"model": _Plain()}, run.best_checkpoint)
    with pytest.raises(StudioError, match="could run code"):
        run.load_checkpoint("best")

    torch.save([torch.zeros(2)], run.best_checkpoint)
    with pytest.raises(StudioError, match="not a studio checkpoint"):
        run.load_checkpoint("best")

    run.best_checkpoint.write_bytes(b"this is not a checkpoint")
    with pytest.raises(StudioError, match="cannot be read"):
        run.load_checkpoint("best")


# -- a full disk ---------------------------------------------------------------------------
class _FullDiskOs:
    """Stands in for ``os`` inside core.atomic: files opened there fill up after ``budget`` bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self.failures = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode="r", *args, **kwargs):
        return _FullFile(os.fdopen(fd, mode, *args, **kwargs), self)


class _FullFile:
    def __init__(self, fh, disk: _FullDiskOs):
        self._fh, self._disk = fh, disk

    def write(self, data):
        if len(data) > self._disk.budget:
            self._fh.write(data[: self._disk.budget])
            self._disk.budget = 0
            self._disk.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.budget -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@pytest.mark.parametrize("budget", [0, 100])
def test_full_disk_during_save_checkpoint_keeps_the_previous_one(store, monkeypatch, budget):
    run = store.create_run(_params())
    run.save_checkpoint("last", {"epoch": 1, "w": torch.ones(1000)})
    before = run.last_checkpoint.read_bytes()

    disk = _FullDiskOs(budget)
    monkeypatch.setattr(core.atomic, "os", disk)
    with pytest.raises((OSError, RuntimeError)):
        run.save_checkpoint("last", {"epoch": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()

    assert disk.failures >= 1
    assert run.last_checkpoint.read_bytes() == before
    assert run.load_checkpoint("last")["epoch"] == 1
    assert _leftovers(store.root) == []


def test_full_disk_during_update_meta_keeps_the_previous_meta(store, monkeypatch):
    run = store.create_run(_params())
    store.update_meta(run.id, status="running", epoch=3)
    before = run.meta_path.read_bytes()

    disk = _FullDiskOs(budget=20)
    monkeypatch.setattr(core.atomic, "os", disk)
    with pytest.raises(OSError) as err:
        store.update_meta(run.id, status="completed", epoch=4)
    monkeypatch.undo()

    assert err.value.errno == errno.ENOSPC
    assert run.meta_path.read_bytes() == before
    assert run.meta()["status"] == "running"
    assert _leftovers(store.root) == []
    assert store.update_meta(run.id, status="completed")["epoch"] == 3  # works again with space


# -- the index -----------------------------------------------------------------------------
def _populate(store: RunStore) -> dict[str, Run]:
    runs = {
        "a": store.create_run(_params("medvcnn", "breastmnist", seed=1)),
        "b": store.create_run(_params("resnet18", "breastmnist")),
        "c": store.create_run(_params("resnet18", "bloodmnist")),
        "d": store.create_run(_params("bloodcnn", "bloodmnist")),
    }
    runs["a"].write_eval({"val": {"auc": 0.7}, "test": {"acc": 0.8, "auc": 0.85, "macro": {"f1": 0.6}}})
    runs["b"].write_eval({"val": {"auc": 0.9}, "test": {"acc": 0.9, "auc": 0.95, "macro": {"f1": 0.8}}})
    runs["c"].write_eval({"val": {"auc": 0.6}, "test": {"acc": 0.5, "auc": 0.55, "macro": {"f1": 0.4}}})
    for key in "abc":
        store.update_meta(runs[key].id, status="completed", epoch=3, train_seconds=10.0)
    store.update_meta(runs["d"].id, status="failed", error="boom; try again")
    store.set_tags(runs["b"].id, ["best"])
    return runs


def test_filter_and_sort(store):
    runs = _populate(store)
    ids = {run.id: key for key, run in runs.items()}

    def keys(rows):
        return [ids[r["run_id"]] for r in rows]

    assert keys(store.list_runs()) == ["d", "c", "b", "a"]  # newest first
    assert keys(store.list_runs(descending=False)) == ["a", "b", "c", "d"]
    assert keys(store.list_runs(dataset="breastmnist", descending=False)) == ["a", "b"]
    assert keys(store.list_runs(model="resnet18", descending=False)) == ["b", "c"]
    assert keys(store.list_runs(status="failed")) == ["d"]
    assert keys(store.list_runs(status=["failed", "queued"])) == ["d"]
    assert keys(store.list_runs(tag="best")) == ["b"]
    assert keys(store.list_runs(dataset="bloodmnist", model="resnet18")) == ["c"]
    assert keys(store.list_runs(order_by="test_auc")) == ["b", "a", "c", "d"]  # no score sorts last
    assert keys(store.list_runs(order_by="test_auc", descending=False)) == ["c", "a", "b", "d"]
    assert [r["test_f1"] for r in store.list_runs(order_by="test_f1")] == [0.8, 0.6, 0.4, None]
    assert store.list_runs(dataset="nothing") == []
    with pytest.raises(StudioError, match="cannot sort runs by 'bogus'"):
        store.list_runs(order_by="bogus")
    with pytest.raises(StudioError):
        store.list_runs(order_by="created; DROP TABLE runs")


def test_index_is_rebuilt_with_identical_rows_after_deleting_it(store):
    _populate(store)
    before = store.list_runs()
    index_file = store.root / "index.sqlite"
    assert index_file.exists()
    index_file.unlink()

    assert store.list_runs() == before
    assert index_file.exists()
    assert RunStore(store.root).list_runs(order_by="test_auc") == store.list_runs(order_by="test_auc")
    assert store.rebuild_index() == 4
    assert store.list_runs() == before


def test_corrupt_index_file_is_rebuilt(store):
    _populate(store)
    before = store.list_runs()
    for suffix in ("-wal", "-shm"):
        Path(str(store.root / "index.sqlite") + suffix).unlink(missing_ok=True)
    (store.root / "index.sqlite").write_bytes(b"garbage, not an SQLite file" * 100)

    assert store.list_runs() == before


def test_hand_deleted_dir_and_damaged_files_do_not_break_listing(store):
    runs = _populate(store)
    shutil.rmtree(runs["a"].dir)
    runs["b"].meta_path.write_text("{this is not json")
    runs["c"].eval_path.write_text("[1, 2")

    rows = {r["run_id"]: r for r in store.list_runs()}
    assert runs["a"].id not in rows
    assert rows[runs["b"].id]["status"] == "unknown"
    assert "meta.json" in rows[runs["b"].id]["error"]
    assert rows[runs["b"].id]["dataset"] == "breastmnist"  # params could still be read
    assert rows[runs["c"].id]["status"] == "completed"
    assert rows[runs["c"].id]["test_auc"] is None and "eval.json" in rows[runs["c"].id]["error"]
    assert rows[runs["d"].id]["error"] == "boom; try again"

    store.rebuild_index()
    assert {r["run_id"]: r for r in store.list_runs()} == rows
    with pytest.raises(StudioError, match="not valid JSON"):
        runs["b"].meta()
    # Writing meta again starts afresh and keeps the damaged file aside.
    store.update_meta(runs["b"].id, status="interrupted")
    assert (runs["b"].dir / "meta.json.corrupt").read_text() == "{this is not json"
    assert [r["status"] for r in store.list_runs(status="interrupted")] == ["interrupted"]


def test_hand_edits_and_copied_in_runs_show_up(store):
    run = store.create_run(_params())
    meta = run.meta()
    meta["status"] = "completed"
    run.meta_path.write_text(json.dumps(meta))
    copied = store.root / "20200101-000000-copied-run-abcd"
    shutil.copytree(run.dir, copied)

    rows = {r["run_id"]: r["status"] for r in store.list_runs()}
    assert rows == {run.id: "completed", copied.name: "completed"}
