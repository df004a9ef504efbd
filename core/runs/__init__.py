"""Runs: the run store (one directory per run plus an SQLite index) and the job runner.

>>> store = RunStore()                      # --runs-dir > $STUDIO_RUNS_DIR > ./runs
>>> runner = JobRunner(store).start()       # workers: python -m core.runs.worker RUN_DIR
>>> run_id = runner.submit({"dataset": "breastmnist", "model": "medvcnn", "epochs": 10})
>>> store.list_runs(dataset="breastmnist", order_by="test_auc")
"""

from core.runs.index import COLUMNS, RunIndex
from core.runs.jobs import Executor, JobRunner, LocalProcessExecutor
from core.runs.store import (
    CHECKPOINTS,
    FINAL_STATUSES,
    STATUSES,
    Run,
    RunStore,
    load_checkpoint_file,
    new_run_id,
    validate_run_id,
)

__all__ = [
    "CHECKPOINTS", "COLUMNS", "FINAL_STATUSES", "STATUSES", "Executor", "JobRunner",
    "LocalProcessExecutor", "Run", "RunIndex", "RunStore", "load_checkpoint_file",
    "new_run_id", "validate_run_id",
]
