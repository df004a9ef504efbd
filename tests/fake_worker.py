"""A stand-in for the trainer, run as a worker process by the job runner tests.

``python tests/fake_worker.py RUN_DIR`` goes through the real ``core.runs.worker.main``
with :func:`fake_training` instead of ``core.train.run_training``. What it does is set by
the run's params:

- ``epochs`` (default 2) and ``epoch_seconds`` (default 0.2): how long it "trains";
- ``mode``: ``"ok"``; ``"fail"`` raises after the first epoch; ``"stubborn"`` ignores
  cancel requests (so the runner must terminate it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runs import worker  # noqa: E402


def fake_training(run, store) -> None:
    params = run.params()
    epochs = int(params.get("epochs", 2))
    mode = params.get("mode", "ok")
    store.update_meta(run.id, device="cpu", epochs=epochs)
    for epoch in range(1, epochs + 1):
        deadline = time.monotonic() + float(params.get("epoch_seconds", 0.2))
        while time.monotonic() < deadline:
            if mode != "stubborn" and run.cancel_requested():
                return  # the worker turns this into "cancelled"
            time.sleep(0.02)
        run.append_metrics({"kind": "epoch", "epoch": epoch, "step": epoch * 10, "loss": 1.0 / epoch})
        store.update_meta(run.id, epoch=epoch, progress=epoch / epochs)
        if mode == "fail":
            raise RuntimeError("fake failure in epoch 1\nsecond line of detail")
    run.write_eval({"val": {"auc": 0.8}, "test": {"acc": 0.75, "auc": 0.85, "macro": {"f1": 0.7}}})


if __name__ == "__main__":
    sys.exit(worker.main(sys.argv[1:], train=fake_training))
