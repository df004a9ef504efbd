"""A stand-in trainer for the experiment tests: ``python tests/experiment_worker.py RUN_DIR``.

It goes through the real ``core.runs.worker.main`` and writes what a trained run writes
(per-epoch metrics, eval.json) with scores that are a known function of the run's settings,
so a test can check rankings and averages exactly:

- val AUC = 0.5 + 40 * lr + 0.01 * seed (+ 0.1 for model ``bloodcnn``), capped at 0.99;
- test AUC = 1.5 - val AUC, so test ranks the runs the other way round;
- ACC = AUC - 0.1 on both splits; log loss = 1 - val ACC.

Each epoch takes ``$EXP_FAKE_EPOCH_S`` seconds (default 0.05), cancel requests are obeyed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runs import worker  # noqa: E402


def scores(config: dict) -> dict:
    val_auc = min(0.99, 0.5 + 40 * float(config["lr"]) + 0.01 * int(config["seed"])
                  + (0.1 if config["model"] == "bloodcnn" else 0.0))
    test_auc = 1.5 - val_auc
    return {"val": {"auc": val_auc, "acc": val_auc - 0.1, "log_loss": 1.1 - val_auc, "macro": {"f1": val_auc - 0.2}},
            "test": {"auc": test_auc, "acc": test_auc - 0.1, "log_loss": 1.1 - test_auc,
                     "macro": {"f1": test_auc - 0.2}}}


def fake_training(run, store) -> None:
    config = run.params()["config"]
    epochs = int(config["epochs"])
    final = scores(config)
    store.update_meta(run.id, device="cpu", epochs=epochs)
    for epoch in range(1, epochs + 1):
        deadline = time.monotonic() + float(os.environ.get("EXP_FAKE_EPOCH_S", "0.05"))
        while time.monotonic() < deadline:
            if run.cancel_requested():
                return
            time.sleep(0.01)
        value = final["val"]["auc"] * epoch / epochs
        run.append_metrics({"kind": "epoch", "epoch": epoch, "step": epoch, "val_auc": value, "val_acc": value - 0.1})
        store.update_meta(run.id, epoch=epoch, epochs_done=epoch)
    run.write_eval(final)
    store.update_meta(run.id, train_seconds=0.1 * epochs)


if __name__ == "__main__":
    sys.exit(worker.main(sys.argv[1:], train=fake_training))
