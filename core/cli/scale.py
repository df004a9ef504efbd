"""The command line beyond one process: ``--executor ray``, ``--processes N`` and torchrun.

- ``python -m core train ... --executor ray [--ray-address ADDR]`` (or ``$STUDIO_EXECUTOR=ray``
  with ``$RAY_ADDRESS``) hands the run to a Ray cluster through the job runner and follows
  it here until it ends; Ctrl-C stops following, not the run.
- ``--processes N`` trains one model on N local processes (DDP; ``params["processes"]``).
- ``torchrun --nproc_per_node N -m core train ...``: rank 0 makes the run and trains it,
  the other ranks follow it (:mod:`core.runs.ddp_launcher`); ``resume`` works the same way.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from core.cli.common import report_end
from core.errors import StudioError

Foreground = Callable[..., int]


def add_executor_arguments(sp, train: bool) -> None:
    """``--executor``/``--ray-address`` (and, for ``train``, ``--processes``/``--num-cpus``/``--num-gpus``)."""
    sp.add_argument("--executor", choices=("local", "ray"),
                    help="where the run trains: local (this process; the default, or $STUDIO_EXECUTOR) or ray "
                         "(a Ray cluster: --ray-address or $RAY_ADDRESS)")
    sp.add_argument("--ray-address", help="the Ray cluster's head, host:port (default $RAY_ADDRESS, else a cluster "
                                          "started on this machine with `ray start --head`)")
    if train:
        sp.add_argument("--processes", type=int, default=None,
                        help="train this one model on N processes (DistributedDataParallel: gloo on the CPU, "
                             "NCCL with one GPU per process)")
        sp.add_argument("--num-cpus", type=float, help="Ray: CPUs for the run (default 1 per process)")
        sp.add_argument("--num-gpus", type=float, help="Ray: GPUs for the run (default 1 per process on a cluster "
                                                       "with GPUs)")


def executor_choice(args) -> str:
    """``local`` or ``ray``: the flag, else ``$STUDIO_EXECUTOR``, else ``local``."""
    from core.runs.jobs import EXECUTOR_ENV

    chosen = (getattr(args, "executor", None) or os.environ.get(EXECUTOR_ENV) or "local").strip().lower()
    if chosen not in ("local", "ray"):
        raise StudioError(f"executor '{chosen}' is not known; set {EXECUTOR_ENV} (or --executor) to local or ray")
    return chosen


def with_settings(params: dict[str, Any], args, world: int | None = None) -> dict[str, Any]:
    """``params`` plus ``processes`` and Ray ``resources`` from the command line."""
    from core.train.distributed import processes_of

    out = dict(params)
    processes = world or getattr(args, "processes", None)
    if processes is not None:
        out["processes"] = processes
        processes_of(out)  # refuse 0 or 1000 before a run directory is made
    resources = {k: v for k, v in (("num_cpus", getattr(args, "num_cpus", None)),
                                   ("num_gpus", getattr(args, "num_gpus", None))) if v is not None}
    if resources:
        if any(v < 0 for v in resources.values()):
            raise StudioError("--num-cpus and --num-gpus must be zero or more")
        out["resources"] = resources
    return out


def train_on_ray(store, params: dict[str, Any], name: str | None, args) -> int:
    """Queue a new run on the Ray cluster and follow it to its end."""
    runner = _ray_runner(store, args)
    run_id = runner.submit(params, name=name)
    print(f"run {run_id} handed to the Ray cluster at {runner.executor.address}")
    return follow(runner, store.get(run_id))


def resume_on_ray(store, run, args) -> int:
    """Queue an existing run on the Ray cluster again and follow it to its end."""
    runner = _ray_runner(store, args)
    runner.submit_existing(run.id)
    print(f"run {run.id} handed to the Ray cluster at {runner.executor.address}")
    return follow(runner, run)


def _ray_runner(store, args):
    from core.runs import JobRunner
    from core.runs.ray_executor import RayExecutor

    return JobRunner(store, RayExecutor(getattr(args, "ray_address", None)), start_thread=False)


def follow(runner, run, interval: float = 1.0) -> int:
    """Poll until ``run`` ends, printing a line per epoch; the closing summary's exit status.

    Ctrl-C stops following: the run keeps training on the cluster.
    """
    from core.runs.lifecycle import FINAL_STATUSES

    shown = 0
    try:
        while True:
            runner.poll()
            epochs = run.metrics(kind="epoch")
            for rec in epochs[shown:]:
                auc = rec.get("val_auc")
                print(f"epoch {rec.get('epoch')}: train loss {rec.get('train_loss', float('nan')):.4f}, "
                      f"val loss {rec.get('val_loss', float('nan')):.4f}, "
                      f"val AUC {'n/a' if auc is None else f'{auc:.4f}'}", flush=True)
            shown = len(epochs)
            if run.meta().get("status") in FINAL_STATUSES:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        print(f"stopped following run {run.id}; it keeps training on the cluster "
              f"(`python -m core cancel {run.id}` stops it)")
        return 130
    return report_end(run)


def train_torchrun(store, params: dict[str, Any], name: str | None, world: tuple[int, int, int],
                   announce: Callable[[Any], None], foreground: Foreground) -> int:
    """One rank of ``torchrun ... -m core train``: rank 0 makes and trains the run, the others follow."""
    import torch.distributed as dist

    from core.runs.ddp_launcher import follow
    from core.train import distributed

    rank, size, local = world
    group = distributed.start_group(rank, size, local, params["config"].get("device", "auto"))
    try:
        box = [store.create_run(params, name=name).id if rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=group._comm_device())
        run = store.get(box[0])
        if rank != 0:
            follow(run, store)
            return 0
        announce(run)
        group.run, group.store = run, store
        return foreground(run, store)
    finally:
        distributed.stop_group()


def resume_torchrun(store, run, world: tuple[int, int, int], foreground: Foreground) -> int:
    """One rank of ``torchrun ... -m core resume RUN_ID``."""
    from core.runs.ddp_launcher import follow
    from core.train import distributed

    rank, size, local = world
    group = distributed.start_group(rank, size, local, run.params()["config"].get("device", "auto"))
    try:
        if rank != 0:
            follow(run, store)
            return 0
        group.run, group.store = run, store
        return foreground(run, store, requeue=True)
    finally:
        distributed.stop_group()
