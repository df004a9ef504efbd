"""One run on several processes: ``DistributedDataParallel`` over gloo (CPU) or NCCL (CUDA).

This module is what a rank needs while it trains: its place in the process group
(:class:`Group`, :func:`start_group`, :func:`current`) and the collectives the trainer calls.
Starting the processes is someone else's job: torchrun (``torchrun --nproc_per_node N -m core
train ...``, see :mod:`core.cli.scale`), or the worker of a run whose params say
``"processes": N``, which starts N - 1 followers (the launcher beside the job runner, ``ddp_launcher``).

Every rank walks the same shuffled order; each global batch of ``batch_size`` images is
split between the ranks (``batch[rank::world]``), DDP all-reduces the gradients, so the
weights stay identical on every rank. Only rank 0 validates (the others get its figures),
and only rank 0 writes (:func:`is_main`). The stop decisions (cancel, time budget) are
agreed every step, so no rank waits for a peer that already left.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any, Mapping

import torch
import torch.distributed as dist

from core.errors import StudioError
from core.train.callbacks import Callback

MAX_PROCESSES = 64
# A collective waits this long for a slow peer (rank 0 validating a large split) before failing.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)

_current: "Group | None" = None


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
        self.share_buffers(trainer)
        box = [trainer.validate() if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def share_buffers(self, trainer) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics move with each rank's own
        share; rank 0's are the run's, and DDP hands them out again at the next step anyway)."""
        for buffer in trainer.model.buffers():
            dist.broadcast(buffer.data, src=0)

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
        self.share_buffers(trainer)  # a cancel may end an epoch before validate() shared them
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
