"""One run on several processes: ``DistributedDataParallel`` over gloo (CPU) or NCCL (CUDA).

Two ways in, one run directory out:

- ``torchrun --nproc_per_node N -m core train ...``: torchrun starts the N processes and
  sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``...; rank 0 makes the run and trains it through
  the worker entry point, the other ranks follow it (:func:`follow`).
- a run whose params say ``"processes": N`` (``--processes N``, or through the job
  runner): the worker process becomes rank 0 and starts N - 1 followers
  (:func:`follower_main`) in its own session, so a cancel, a SIGTERM or a SIGKILL of the
  worker's session reaches them all (:func:`train_processes`); a follower whose worker is
  gone ends itself.

Every rank walks the same shuffled order; each global batch of ``batch_size`` images is
split between the ranks (``batch[rank::world]``), DDP all-reduces the gradients, so the
weights stay identical on every rank. Only rank 0 validates (the others get its figures),
and only rank 0 writes: the followers see the run through :class:`ReadOnlyRun`, whose
writes go nowhere. The stop decisions (cancel, time budget) are agreed every step, so no
rank waits for a peer that already left.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.distributed as dist

from core.errors import StudioError
from core.train.callbacks import Callback

logger = logging.getLogger(__name__)

MAX_PROCESSES = 64
# A collective waits this long for a slow peer (rank 0 validating a large split) before failing.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
FOLLOWER_EXIT_GRACE_S = 15.0  # after rank 0 ends, how long followers get to leave by themselves
PARENT_ENV = "STUDIO_DIST_PARENT"  # the pid of the worker that started a follower
_REPO_ROOT = Path(__file__).resolve().parents[2]

_current: "Group | None" = None
# The followers' command (not ``-m core.train.distributed``: that would run a second copy of
# this module, whose process group the trainer would not see).
_FOLLOWER = "import sys; from core.train.distributed import follower_main; sys.exit(follower_main())"


def processes_of(params: Mapping[str, Any]) -> int:
    """How many processes a run trains on (``params["processes"]``, default 1).

    Raises:
        StudioError: not a whole number from 1 to :data:`MAX_PROCESSES`.
    """
    value = params.get("processes", 1) if isinstance(params, Mapping) else 1
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PROCESSES:
        raise StudioError(f"processes must be a whole number from 1 to {MAX_PROCESSES} (got {value!r}); "
                          "1 trains in one process")
    return value


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when torchrun (or our launcher) started this process
    as one of several, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    return (rank, world, local) if world > 1 else None


def current() -> "Group | None":
    """The process group this process trains in, or None for a one-process run."""
    return _current


def is_main() -> bool:
    """True unless this process is a follower (rank above 0) of a several-process run."""
    return _current is None or _current.rank == 0


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A SHA-1 of a state dict's tensors (names, dtypes, values), whatever their memory format.

    Args:
        state_dict: e.g. ``model.state_dict()`` or a checkpoint's ``state_dict``.

    Returns:
        40 hex digits.
    """
    h = hashlib.sha1()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Group:
    """This process's place in a several-process run, and the collectives the trainer needs.

    Args:
        rank, world, local_rank: as torchrun numbers them.
        device: where this rank trains (``cuda:LOCAL_RANK`` or the CPU).
        backend: ``nccl`` or ``gloo``.
    """

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device, backend: str):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device, self.backend = device, backend
        self.run = self.store = None  # rank 0's real run and store, for the closing record

    # -- used by the trainer ---------------------------------------------------------------
    def share(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's share of one global batch: every ``world``-th index from ``rank``."""
        return idx[self.rank::self.world]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model wrapped for training (the trainer keeps the bare one for everything else)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def callback(self) -> Callback:
        """The trainer's last callback: agrees stops every step and epoch, checks the weights at the end."""
        return _Agree(self)

    def epoch_totals(self, loss_sum: torch.Tensor, seen: int, scores: list[torch.Tensor],
                     labels: list[torch.Tensor]) -> tuple[torch.Tensor, int, list, list]:
        """The epoch's loss sum, count, scores and labels over every rank's shares."""
        totals = torch.tensor([float(loss_sum), float(seen)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(totals)
        mine = (torch.cat(scores).float().cpu(), torch.cat(labels).cpu())
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, mine)
        return (totals[0].to(loss_sum.device), int(totals[1].item()),
                [torch.cat([g[0] for g in gathered])], [torch.cat([g[1] for g in gathered])])

    def validate(self, trainer) -> dict[str, float]:
        """Rank 0 validates; every rank gets its figures (so every rank decides alike)."""
        # BatchNorm statistics move with each rank's own share; rank 0's are the run's (DDP
        # hands them out again at the next step anyway), so every rank takes them now.
        for buffer in trainer.model.buffers():
            dist.broadcast(buffer.data, src=0)
        box = [trainer.validate() if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def agree(self, trainer) -> None:
        """Make ``should_stop``/``cancelled`` true on every rank when it is true on any."""
        before = bool(trainer.should_stop)
        flags = torch.tensor([float(trainer.should_stop), float(trainer.cancelled)], device=self._comm_device())
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        stop, cancelled = bool(flags[0] > 0), bool(flags[1] > 0)
        if stop and not getattr(trainer, "_agreed_stop", False):
            # The first agreed stop: every rank learns why from whichever rank decided it.
            why: list[Any] = [None] * self.world
            dist.all_gather_object(why, (trainer.stop_reason, getattr(trainer, "stop_kind", None)) if before else None)
            reason = next((w for w in why if w is not None), (None, None))
            if trainer.stop_reason is None:
                trainer.stop_reason = reason[0]
            if reason[1] is not None and getattr(trainer, "stop_kind", None) is None:
                trainer.stop_kind = reason[1]
            trainer._agreed_stop = True
        trainer.should_stop, trainer.cancelled = stop, cancelled

    def finish(self, trainer) -> None:
        """Check that every rank ends with the same weights; rank 0 records how the run trained.

        Raises:
            StudioError: on rank 0, when the ranks' weights differ (a broken all-reduce).
        """
        digests: list[Any] = [None] * self.world
        dist.all_gather_object(digests, weights_digest(trainer.model.state_dict()))
        if self.rank != 0:
            return
        if self.store is not None and self.run is not None:
            self.store.update_meta(self.run.id, distributed={
                "processes": self.world, "backend": self.backend, "weights_sha1": digests})
        if len(set(digests)) != 1:
            raise StudioError(f"the {self.world} training processes ended with different weights, so the "
                              "gradients were not shared correctly; train the run again on one process")

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


class _Agree(Callback):
    def __init__(self, group: Group):
        self.group = group

    def on_fit_start(self, trainer) -> None:
        if self.group.rank > 0 and trainer.start_epoch > 1:
            # A resumed run restores rank 0's augmentation stream on every rank; give each
            # rank its own again, derived from the seed, so a resume stays deterministic.
            trainer.aug_generator.manual_seed(trainer.cfg.seed + 1 + 7919 * self.group.rank + trainer.start_epoch)

    def on_step_end(self, trainer, step, logs) -> None:
        self.group.agree(trainer)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        self.group.agree(trainer)

    def on_fit_end(self, trainer, status) -> None:
        self.group.finish(trainer)


def start_group(rank: int, world: int, local_rank: int, device_preference: str = "auto") -> Group:
    """Join the process group named by ``MASTER_ADDR``/``MASTER_PORT`` (set by torchrun or us).

    NCCL when this rank trains on a CUDA GPU (``cuda:LOCAL_RANK``), gloo on the CPU.

    Args:
        rank, world, local_rank: this process's numbers.
        device_preference: the run's ``device`` setting.

    Returns:
        The :class:`Group`, also what :func:`current` returns from now on.

    Raises:
        StudioError: fewer GPUs than processes on this machine, or Apple MPS (no DDP there).
    """
    global _current
    from core.train.device import pick_device

    device = pick_device(device_preference)
    if device.type == "mps":
        raise StudioError("training on several processes works on CUDA GPUs or the CPU, not on Apple MPS; "
                          "choose device cpu, or train on one process")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise StudioError(f"a run on several processes needs one GPU per process on each machine, and "
                              f"process {local_rank + 1} finds only {count}; lower processes or give it more GPUs")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    _current = Group(rank, world, local_rank, device, backend)
    return _current


def stop_group() -> None:
    """Leave the process group (the next run in this process trains alone again)."""
    global _current
    _current = None
    if dist.is_initialized():
        dist.destroy_process_group()


def training_function(run) -> Callable[..., Any]:
    """What the worker calls to train ``run``: ``run_training``, or :func:`train_processes`
    when the run asks for several processes and no process group exists yet."""
    from core.train.run import run_training

    if processes_of(run.params()) > 1 and _current is None:
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
    """``(rank, exit code)`` of the followers that have ended, waiting up to ``wait`` s for one."""
    deadline = time.monotonic() + wait
    while True:
        bad = [(i + 1, p.returncode) for i, p in enumerate(followers) if p.poll() is not None]
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
