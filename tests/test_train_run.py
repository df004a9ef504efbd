"""Real training runs on the shared MedMNIST files: the run directory, determinism, cancel,
kill-and-resume and the job queue, all through the same entry point the studio uses."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from core.evaluate import evaluate_predictions
from core.runs import JobRunner, RunStore
from core.runs.worker import main as worker_main
from core.train import build_params, make_config, run_training


def _train(store, medmnist_dir, **overrides):
    cfg = make_config("breastmnist", "medvcnn", "default", data_dir=str(medmnist_dir), **overrides)
    run = store.create_run(build_params(cfg))
    assert worker_main([str(run.dir)], train=run_training) == 0
    return store.get(run.id)


def test_medvcnn_on_breastmnist_learns_and_writes_a_consistent_run(tmp_path, medmnist_dir):
    store = RunStore(tmp_path / "runs")
    run = _train(store, medmnist_dir, epochs=10, seed=0)
    meta = run.meta()
    assert meta["status"] == "completed", meta.get("error")
    assert meta["epochs_done"] == 10 and meta["device"] == "cpu"
    # 'auto' precision: bf16 on a CPU with bf16 units, fp32 elsewhere; planned and used agree here
    from core.train.device import training_precision

    assert meta["precision"] == run.params()["precision"] == training_precision(torch.device("cpu"), "auto")
    assert meta["params_count"] == sum(p.numel() for p in torch.nn.Module.parameters(_model(run)))
    assert meta["latency_ms"] > 0 and meta["train_seconds"] > 0

    params = json.loads(run.params_path.read_text())
    assert params["model"] == "medvcnn" and params["dataset"] == "breastmnist"
    assert params["config"]["epochs"] == 10 and "torch" in params["versions"]

    epochs = run.metrics(kind="epoch")
    assert [e["epoch"] for e in epochs] == list(range(1, 11))
    assert all(np.isfinite(e["train_loss"]) and 0 <= e["val_acc"] <= 1 for e in epochs)
    assert run.metrics(kind="step"), "step lines are logged too"

    # the best checkpoint is the epoch with the best val AUC (the default recipe's monitor)
    best_epoch = max(epochs, key=lambda e: e["val_auc"])["epoch"]
    assert meta["best_epoch"] == best_epoch
    best, last = run.load_checkpoint("best"), run.load_checkpoint("last")
    assert best["epoch"] == best_epoch and last["epoch"] == 10
    assert best["class_names"] == ["malignant", "normal, benign"] and best["task"] == "binary"
    assert best["model_args"] == {"in_channels": 1, "num_classes": 2, "image_size": 28, "pretrained": False}
    assert best["temperature"] > 0

    preds = run.predictions()
    assert preds["test_scores"].shape == (156, 2) and preds["val_scores"].shape == (78, 2)
    np.testing.assert_allclose(preds["test_scores"].sum(1), 1, atol=1e-5)
    ev = run.eval()
    recomputed = evaluate_predictions(preds["test_scores"], preds["test_labels"], "binary")
    assert ev["test"]["acc"] == pytest.approx(recomputed["acc"]) and ev["test"]["auc"] == pytest.approx(recomputed["auc"])
    assert meta["test_auc"] == pytest.approx(ev["test"]["auc"])
    assert ev["test"]["auc"] > 0.75, ev["test"]

    row = store.list_runs()[0]
    assert row["status"] == "completed" and row["test_auc"] == pytest.approx(ev["test"]["auc"])


def _model(run):
    from core.inference import load_run_model

    return load_run_model(run).model


def test_training_is_deterministic_on_cpu(tmp_path, medmnist_dir):
    store = RunStore(tmp_path / "runs")
    a = _train(store, medmnist_dir, epochs=2, seed=3, augment="light")
    b = _train(store, medmnist_dir, epochs=2, seed=3, augment="light")
    la = [e["val_loss"] for e in a.metrics(kind="epoch")]
    lb = [e["val_loss"] for e in b.metrics(kind="epoch")]
    assert la == lb
    np.testing.assert_array_equal(a.predictions()["test_scores"], b.predictions()["test_scores"])
    c = _train(store, medmnist_dir, epochs=2, seed=4, augment="light")
    assert [e["val_loss"] for e in c.metrics(kind="epoch")] != la


def test_paper_recipe_with_dwell_early_stopping_and_margin_loss_runs(tmp_path, medmnist_dir):
    store = RunStore(tmp_path / "runs")
    run = _train(store, medmnist_dir, epochs=3, early_stopping=1, dwell=True, loss="margin",
                 class_weights=True, schedule="plateau", optimizer="adamax", l1=1e-6, l2=1e-5)
    assert run.meta()["status"] == "completed"
    assert 1 <= run.meta()["epochs_done"] <= 3


def test_nan_loss_fails_the_run_with_advice(tmp_path, medmnist_dir):
    store = RunStore(tmp_path / "runs")
    cfg = make_config("breastmnist", "medvcnn", "default", data_dir=str(medmnist_dir), epochs=2,
                      lr=10.0, optimizer="sgd", schedule="none", log_every=1)
    run = store.create_run(build_params(cfg))
    assert worker_main([str(run.dir)], train=run_training) == 1
    meta = store.get(run.id).meta()
    assert meta["status"] == "failed"
    assert "lower the learning rate" in meta["error"] and "Traceback" not in meta["error"]


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _long_params(medmnist_dir, epochs):
    # many short epochs: a cancel or a kill lands between two checkpoints, whatever the machine's speed
    return build_params(make_config("breastmnist", "medvcnn", "default", data_dir=str(medmnist_dir),
                                    epochs=epochs, seed=0))


def test_cancel_mid_run_keeps_best_checkpoint(tmp_path, medmnist_dir):
    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, max_concurrent=1).start()
    try:
        run_id = runner.submit(_long_params(medmnist_dir, epochs=300))
        run = store.get(run_id)
        _wait_for(lambda: run.best_checkpoint.exists(), 120, "the first epoch")
        runner.cancel(run_id)
        assert runner.wait(run_id, timeout=60) == "cancelled"
    finally:
        runner.stop()
    meta = run.meta()
    assert meta["status"] == "cancelled" and 1 <= meta["epochs_done"] < 300
    assert run.load_checkpoint("best")["epoch"] >= 1


def test_killed_worker_is_interrupted_then_resumes_to_the_same_epochs(tmp_path, medmnist_dir):
    EPOCHS = 15  # ~0.5 s each here: the kill lands after the first and well before the last
    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, max_concurrent=1).start()
    try:
        run_id = runner.submit(_long_params(medmnist_dir, epochs=EPOCHS))
        run = store.get(run_id)
        _wait_for(lambda: run.last_checkpoint.exists() and run.meta().get("pid"), 120, "the first epoch")
        os.kill(run.meta()["pid"], signal.SIGKILL)
        time.sleep(0.5)
    finally:
        runner.stop()
    # a new runner on the same store is what a restarted server does
    JobRunner(store, max_concurrent=1)
    meta = run.meta()
    assert meta["status"] == "interrupted", meta
    assert "resume" in meta["error"].lower()
    done_before = run.load_checkpoint("last")["epoch"]
    assert 1 <= done_before < EPOCHS

    runner = JobRunner(store, max_concurrent=1).start()
    try:
        runner.submit_existing(run_id)
        assert runner.wait(run_id, timeout=240) == "completed"
    finally:
        runner.stop()
    meta = run.meta()
    assert meta["epochs_done"] == EPOCHS and meta["resumed_from_epoch"] == done_before
    assert sorted({e["epoch"] for e in run.metrics(kind="epoch")}) == list(range(1, EPOCHS + 1))
    assert run.eval()["test"]["acc"] > 0.5


def test_two_jobs_with_concurrency_one_run_one_after_the_other(tmp_path, medmnist_dir):
    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, max_concurrent=1).start()
    try:
        params = build_params(make_config("breastmnist", "medvcnn", "default", data_dir=str(medmnist_dir), epochs=1))
        a, b = runner.submit(params), runner.submit(params)
        _wait_for(lambda: store.get(a).meta()["status"] == "running", 60, "the first run to start")
        assert store.get(b).meta()["status"] == "queued"
        assert runner.wait(a, timeout=120) == "completed"
        assert runner.wait(b, timeout=120) == "completed"
    finally:
        runner.stop()
    ma, mb = store.get(a).meta(), store.get(b).meta()
    assert ma["finished"] <= mb["started"]
