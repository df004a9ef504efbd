"""Several visitors at once: four sessions import their own images and queue a run at the
same moment, through the functions the Datasets and Train pages call (``ui.save_upload``,
``ui.list_uploads`` and ``JobRunner.submit_many``), and real worker processes train them."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import pytest

from core.runs import FINAL_STATUSES, JobRunner, LocalProcessExecutor, RunStore
from core.train import build_params, make_config
from helpers_runs import write_dataset_folder

SESSIONS = 4
RUN_FILES = {"params.json", "meta.json", "metrics.jsonl", "checkpoints", "eval.json", "predictions.npz",
             "worker.log"}


@pytest.fixture
def ui(monkeypatch):
    """studio.ui in the hosted demo."""
    monkeypatch.setenv("STUDIO_DEMO", "1")
    from studio import ui

    return ui


@pytest.fixture
def runner(ui):
    """The server's job runner, as ``ui.runner()`` makes it, but with a slot per session so
    the four runs train side by side (one torch thread each: the test machine is small)."""
    runner = JobRunner(ui.store(), LocalProcessExecutor(env={"OMP_NUM_THREADS": "1"}),
                       max_concurrent=SESSIONS, poll_interval=0.1).start()
    yield runner
    runner.stop()


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, "scans/" + f.relative_to(folder).as_posix())
    return buf.getvalue()


def test_four_sessions_queue_at_once_and_each_sees_only_its_own(ui, runner, tmp_path):
    # Every session uploads "scans.zip", but each with its own number of training images,
    # so a run that read another session's data would show it in n_train.
    n_train = {i: 8 + 2 * i for i in range(SESSIONS)}
    uploads = {i: zipped(write_dataset_folder(tmp_path / f"src{i}", {"train": n_train[i], "val": 4, "test": 4},
                                              seed=i)) for i in range(SESSIONS)}
    start = threading.Barrier(SESSIONS)
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def session(i: int) -> None:
        try:
            owner = f"visitor{i}"
            folder = ui.save_upload("scans.zip", uploads[i], owner)  # Datasets page
            offered = ui.list_uploads(owner)  # what the Train page offers this session
            cfg = make_config(str(folder), "medvcnn", "default", image_size=28, epochs=1, batch_size=8,
                              device="cpu")
            start.wait(timeout=30)
            [run_id] = runner.submit_many([(build_params(cfg), f"visitor {i}")], owner=owner)  # Train page
            results[i] = {"owner": owner, "folder": folder, "offered": offered, "run_id": run_id}
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    store = RunStore()
    ids = [results[i]["run_id"] for i in range(SESSIONS)]
    assert len(set(ids)) == SESSIONS
    assert {store.get(r).meta()["status"] for r in ids} <= {"queued", "running"}, "all four were queued"

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not all(store.get(r).meta().get("status") in FINAL_STATUSES for r in ids):
        time.sleep(0.5)

    folders = {results[i]["folder"] for i in range(SESSIONS)}
    assert len(folders) == SESSIONS
    for i in range(SESSIONS):
        r = results[i]
        run = store.get(r["run_id"])
        meta = run.meta()
        assert meta["status"] == "completed", (meta.get("status"), meta.get("error"))
        # none sees another session's uploads
        assert r["offered"] == [r["folder"]]
        assert ui.list_uploads(r["owner"]) == [r["folder"]]
        assert r["folder"].parent == ui.uploads_root(r["owner"])
        # no run's files mixed: each trained on its own folder and holds only its own files
        assert meta["owner"] == r["owner"] and meta["name"] == f"visitor {i}"
        assert run.params()["dataset"] == str(r["folder"])
        assert meta["n_train"] == n_train[i]
        assert {p.name for p in run.dir.iterdir()} == RUN_FILES
        assert [e["epoch"] for e in run.metrics(kind="epoch")] == [1]
        ckpt = run.load_checkpoint("best")
        assert ckpt["class_names"] == ["absent", "present"] and ckpt["config"]["dataset"] == str(r["folder"])
        assert len(run.predictions()["test_labels"]) == 4
    rows = store.list_runs()
    assert sorted(row["run_id"] for row in rows) == sorted(ids)
    assert {row["owner"] for row in rows} == {f"visitor{i}" for i in range(SESSIONS)}
