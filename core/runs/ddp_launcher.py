"""Starting the processes of one run on several processes, and the followers' view of the run.

A run whose params say ``"processes": N`` (``--processes N``, or through the job runner):
the worker process becomes rank 0 and starts N - 1 followers (:func:`follower_main`) in its
own session, so a cancel, a SIGTERM or a SIGKILL of the worker's session reaches them all
(:func:`train_processes`); a follower whose worker is gone ends itself. Under torchrun
(``torchrun --nproc_per_node N -m core train ...``), torchrun starts the processes and the
ranks above 0 train through :func:`follow`.

Followers see the run through :class:`ReadOnlyRun` and :class:`ReadOnlyStore`, whose writes
go nowhere: rank 0 alone writes metrics, checkpoints, ``eval.json`` and predictions. What a
rank does while it trains (the process group, the collectives) is
:mod:`core.train.distributed`.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from core.errors import StudioError
from core.train.distributed import current, env_world, processes_of, start_group, stop_group

logger = logging.getLogger(__name__)

FOLLOWER_EXIT_GRACE_S = 15.0  # after rank 0 ends, how long followers get to leave by themselves
PARENT_ENV = "STUDIO_DIST_PARENT"  # the pid of the worker that started a follower
_REPO_ROOT = Path(__file__).resolve().parents[2]
# The followers' command (not ``-m core.runs.ddp_launcher``: that would run a second copy of
# this module under the name __main__; the command line names follower_main and the run dir).
_FOLLOWER = "import sys; from core.runs.ddp_launcher import follower_main; sys.exit(follower_main())"


def training_function(run) -> Callable[..., Any]:
    """What the worker calls to train ``run``: ``run_training``, or :func:`train_processes`
    when the run asks for several processes and no process group exists yet."""
    from core.train.run import run_training

    if processes_of(run.params()) > 1 and current() is None:
        return train_processes
    return run_training


def train_processes(run, store, progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train ``run`` on ``params["processes"]`` local processes, this one being rank 0.

    Args:
        run, store: the run (claimed by this worker) and its store.
        progress: the step/epoch callback of rank 0 (the CLI's progress bar).

    Returns:
        What :func:`core.train.run.run_training` returns on rank 0.

    Raises:
        StudioError: a classical model, or a follower that ended before training finished.
    """
    from core.models import list_classical
    from core.train.config import TrainConfig
    from core.train.run import run_training

    params = run.params()
    world = processes_of(params)
    cfg = TrainConfig.from_dict(params["config"])
    if cfg.model in list_classical():
        raise StudioError(f"{cfg.model} is a classical baseline and trains on one process; set processes to 1")
    threads = str(max(1, (os.cpu_count() or 1) // world))
    shared = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(world),
              "LOCAL_WORLD_SIZE": str(world)}
    env = {**os.environ, **shared, PARENT_ENV: str(os.getpid()), "OMP_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    followers = [subprocess.Popen([sys.executable, "-c", _FOLLOWER, str(run.dir)],
                                  env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdin=subprocess.DEVNULL)
                 for r in range(1, world)]
    saved = {k: os.environ.get(k) for k in (*shared, "RANK", "LOCAL_RANK")}
    os.environ.update({**shared, "RANK": "0", "LOCAL_RANK": "0"})
    torch.set_num_threads(int(threads))
    try:
        group = start_group(0, world, 0, cfg.device)
        group.run, group.store = run, store
        logger.info("run %s trains on %d processes (%s)", run.id, world, group.backend)
        return run_training(run, store, progress)
    except Exception as exc:
        ended = _ended(followers, wait=2.0)
        if ended:
            rank, code = ended[0]
            raise StudioError(f"training process {rank + 1} of {world} ended with exit code {code} before the run "
                              "finished (worker.log has its message); resume the run") from exc
        raise
    finally:
        stop_group()
        _end_followers(followers)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def follow(run, store) -> dict[str, Any]:
    """Train as a follower (rank above 0) of ``run``: the same steps, no writes."""
    from core.train.run import run_training

    return run_training(ReadOnlyRun(run), ReadOnlyStore(store))


def follower_main(argv: Sequence[str] | None = None) -> int:
    """One follower started by :func:`train_processes` (``argv``: ``[RUN_DIR]``).

    Returns:
        0 when training ended (however rank 0 ended it), 1 on an error, 2 on bad usage.
    """
    from core.runs.store import RunStore
    from core.train.config import TrainConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    world = env_world()
    if len(argv) != 1 or world is None:
        print("usage: follower_main([RUN_DIR]) with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s rank {world[0]}: %(message)s")
    _watch_parent()
    run_dir = Path(argv[0]).resolve()
    try:
        store = RunStore(run_dir.parent)
        run = store.get(run_dir.name)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        start_group(*world, TrainConfig.from_dict(run.params()["config"]).device)
        follow(run, store)
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        stop_group()


class ReadOnlyRun:
    """A follower's view of a run: reads pass through, writes are dropped (rank 0 writes)."""

    def __init__(self, run):
        self._run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        return self._run.meta()

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        pass

    def save_checkpoint(self, which: str, obj: Mapping[str, Any]) -> Path:
        return self._run.checkpoint_path(which)

    def write_eval(self, evaluation: Mapping[str, Any]) -> None:
        pass

    def write_predictions(self, **arrays: Any) -> None:
        pass


class ReadOnlyStore:
    """A follower's view of the run store: meta updates are dropped (rank 0 writes them)."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def update_meta(self, run_id: str, **fields: Any) -> dict[str, Any]:
        return self._store.get(run_id).meta()

    def update_meta_if(self, run_id: str, condition: Any, **fields: Any) -> dict[str, Any] | None:
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ended(followers: list[subprocess.Popen], wait: float) -> list[tuple[int, int]]:
    """``(rank, exit code)`` of the followers that ended with an error, waiting up to ``wait`` s for one."""
    deadline = time.monotonic() + wait
    while True:
        bad = [(i + 1, p.returncode) for i, p in enumerate(followers) if p.poll() not in (None, 0)]
        if bad or time.monotonic() >= deadline:
            return bad
        time.sleep(0.1)


def _end_followers(followers: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + FOLLOWER_EXIT_GRACE_S
    for p in followers:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("training process %d did not end by itself; stopping it", p.pid)
            p.kill()
            p.wait(5)


def _watch_parent() -> None:
    """End this follower when the worker that started it is gone (a SIGKILL reaches only it)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
