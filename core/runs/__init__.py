"""Runs: the run store (one directory per run plus an SQLite index) and the job runner.

Where each piece lives:

- ``run.py``: :class:`Run`, one run directory (params, meta, metrics, eval, checkpoints)
- ``store.py``: :class:`RunStore`, all runs plus ``index.py`` (the SQLite listing)
- ``lifecycle.py``: the statuses, timestamps and "why it stopped" sentences
- ``owners.py``: the demo's rule on who may delete, rename, tag, cancel, resume
- ``jobs.py``: :class:`JobRunner` (queue, schedule); ``supervise.py``: launch, watch,
  settle and stop its workers; ``executors.py``: local processes, liveness, GPU slots;
  ``ray_executor.py``: the same on a Ray cluster
- ``worker.py``: the worker entry point (``python -m core.runs.worker RUN_DIR``);
  ``worker_proof.py``: which process may be signalled; ``ddp_launcher.py``: one run on
  several processes; ``reaper.py``: settles a foreground run whose process died
- ``safe_json.py``: reading run files a hand edit may have broken; ``leaderboard.py``:
  what Compare tabulates (recipes, seed groups)
- ``submit.py``: the settings of a new run, assembled and submitted the same way everywhere
- the checkpoint format is :mod:`core.checkpoint`

>>> store = RunStore()                      # --runs-dir > $STUDIO_RUNS_DIR > ./runs
>>> runner = JobRunner(store).start()       # workers: python -m core.runs.worker RUN_DIR
>>> run_id = runner.submit({"dataset": "breastmnist", "model": "medvcnn", "epochs": 10})
>>> store.list_runs(dataset="breastmnist", order_by="test_auc")
"""

from core.checkpoint import load_checkpoint_file
from core.runs.executors import Executor, LocalProcessExecutor
from core.runs.index import COLUMNS, RunIndex
from core.runs.jobs import JobRunner
from core.runs.lifecycle import FINAL_STATUSES, STATUSES
from core.runs.run import CHECKPOINTS, Run
from core.runs.store import RunStore, new_run_id, validate_run_id

__all__ = [
    "CHECKPOINTS", "COLUMNS", "FINAL_STATUSES", "STATUSES", "Executor", "JobRunner",
    "LocalProcessExecutor", "Run", "RunIndex", "RunStore", "load_checkpoint_file",
    "new_run_id", "validate_run_id",
]
