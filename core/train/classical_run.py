"""Training a classical scikit-learn baseline as a run, so it sits in the same leaderboard.

The fitted estimator is not saved (scikit-learn models are pickles, and the studio loads no
pickles); a classical run is for comparison, its metrics and predictions are kept.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from core.train.config import TrainConfig


def run_classical(run, store, cfg: TrainConfig, data) -> dict[str, Any]:
    """Fit on train, score val and test, write eval.json and predictions.npz.

    Returns:
        The fields written to ``meta.json`` plus ``"status": "completed"`` (the worker
        records the status and the times).
    """
    from core.models import create_classical
    from core.train.evaluation import evaluate_splits

    est = create_classical(cfg.model, seed=cfg.seed)
    t0 = time.monotonic()
    est.fit(data.images["train"], data.labels["train"])
    train_seconds = time.monotonic() - t0
    evals, arrays = evaluate_splits(
        lambda split: (np.asarray(est.predict_proba(data.images[split]), dtype=np.float32), None),
        data.labels, data.task, data.class_names)
    t1 = time.monotonic()
    est.predict_proba(data.images["test"][:64])
    latency_ms = (time.monotonic() - t1) / min(64, len(data.images["test"])) * 1000
    run.write_predictions(**arrays)
    run.write_eval(evals)
    final = {"epochs_done": 1, "best_epoch": 1,
             "train_seconds": round(train_seconds, 3), "latency_ms": latency_ms, "progress": 1.0,
             "task": data.task, "class_names": list(data.class_names), "params_count": 0,
             "test_acc": evals["test"]["acc"], "test_auc": evals["test"]["auc"]}
    store.update_meta(run.id, **final)
    return {**final, "status": "completed"}
