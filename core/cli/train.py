"""``python -m core train``, ``resume`` and ``cancel``: a run's life from the command line.

``train`` and ``resume`` train in this process (the same worker entry point the job runner
starts), or hand the run to Ray or torchrun (:mod:`core.cli.scale`).
"""

from __future__ import annotations

import core.cli.scale as scale
from core.cli.common import add_dirs, number, open_store, positive_int, report_end
from core.errors import StudioError


def add_commands(sub) -> None:
    """Add ``train``, ``resume`` and ``cancel`` to the subparsers ``sub``."""
    t = sub.add_parser("train", help="train a model in the foreground")
    t.add_argument("--dataset", required=True, help="a MedMNIST name (bloodmnist) or a path to an image folder or zip")
    t.add_argument("--model", required=True, help="a model name (python -m core models)")
    t.add_argument("--size", type=positive_int, default=28, help="image size: 28, 64, 128 or 224")
    t.add_argument("--epochs", type=positive_int, help="number of epochs (default: the recipe's)")
    t.add_argument("--recipe", default="default", help="default, paper, medmnist or a seed key (python -m core recipes)")
    t.add_argument("--seed", type=positive_int, default=0)
    t.add_argument("--lr", type=number, help="learning rate (default: the recipe's)")
    t.add_argument("--batch-size", type=positive_int)
    t.add_argument("--optimizer")
    t.add_argument("--schedule")
    t.add_argument("--augment", help="none, light, flipshift, turns, medvcnn or snet")
    t.add_argument("--max-minutes", type=number, help="stop after this many minutes of training")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--precision", help="auto (bf16 on CUDA and on a CPU with native bf16 units, fp32 "
                                       "elsewhere), fp32, or bf16")
    t.add_argument("--pretrained", action="store_true", help="start from ImageNet weights (needs a network)")
    t.add_argument("--name", help="a name for the run")
    add_dirs(t)
    scale.add_executor_arguments(t, train=True)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("resume", help="resume an interrupted or cancelled run in the foreground")
    r.add_argument("run_id")
    add_dirs(r)
    scale.add_executor_arguments(r, train=False)
    r.set_defaults(func=cmd_resume)

    c = sub.add_parser("cancel", help="cancel a queued or running run")
    c.add_argument("run_id")
    add_dirs(c, data=False)
    c.set_defaults(func=cmd_cancel)


def cmd_train(args) -> int:
    from core.models import list_classical, list_models
    from core.runs.submit import run_request

    if args.model not in list_models() and args.model not in list_classical():
        raise StudioError(f"unknown model '{args.model}'; choose one of: {', '.join(list_models() + list_classical())}.")
    # check_data: a missing dataset fails before a run directory is made.
    request = run_request(args.dataset, args.model, args.recipe, name=args.name, check_data=True,
                          image_size=args.size, epochs=args.epochs, seed=args.seed, lr=args.lr,
                          batch_size=args.batch_size, optimizer=args.optimizer, schedule=args.schedule,
                          augment=args.augment, max_minutes=args.max_minutes, device=args.device,
                          precision=args.precision, pretrained=args.pretrained or None, data_dir=args.data_dir)
    cfg = request.config
    store = open_store(args)
    from core.train.distributed import env_world

    world = env_world()  # started by torchrun as one of several processes
    params = scale.with_settings(request.params, args, world=world[1] if world else None)

    def announce(run) -> None:
        print(f"run {run.id}: {cfg.model} on {cfg.dataset} ({cfg.image_size} px), recipe {cfg.recipe}, "
              f"{cfg.epochs} epochs, seed {cfg.seed}")

    if world is not None:
        return scale.train_torchrun(store, params, request.name, world, announce, train_foreground)
    if scale.executor_choice(args) == "ray":
        return scale.train_on_ray(store, params, request.name, args)
    run = store.create_run(params, name=request.name)
    announce(run)
    return train_foreground(run, store)


def train_foreground(run, store, requeue: bool = False) -> int:
    """Train ``run`` in this process with a progress bar; the closing line's exit status."""
    import logging

    from core.runs import worker
    from core.runs.ddp_launcher import training_function
    from core.train.terminal_progress import TrainingProgress

    # The worker logs progress lines for worker.log; here the bar (or a line per epoch) says it
    # better, and the closing line below says how the run ended, so the worker's own
    # "run ... failed" line would only repeat it.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    worker_log = logging.getLogger(worker.__name__)
    repeat = _DropFailedLine()
    worker_log.addFilter(repeat)
    # This process trains the run itself: no job runner's worker (or launch token) has it, and
    # whoever opens the store judges it by the pid and start time worker.main records
    # (core.runs.reaper), since nobody is watching to settle it if it is killed.
    requeued = {"status": "queued", "error": None} if requeue else {}
    # Requeued right before the worker claims it, so a server's runner has no gap to take it.
    store.update_meta(run.id, executor="foreground", **requeued)
    try:
        with TrainingProgress(run.params()["config"]["epochs"]) as progress:
            worker.main([str(run.dir)], train=lambda r, s: training_function(r)(r, s, progress=progress.update))
    finally:
        worker_log.removeFilter(repeat)
    return report_end(run)


class _DropFailedLine:
    """A logging filter that drops the worker's "run X failed: ..." record."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("run %s failed")


def cmd_resume(args) -> int:
    store = open_store(args)
    run = store.get(args.run_id)
    status = run.meta().get("status")
    if status in ("completed", "running"):
        raise StudioError(f"run {run.id} is {status}; only interrupted, cancelled, failed or queued runs can be resumed.")
    if run.cancel_requested():
        run.clear_cancel()
    if args.data_dir:
        print("note: --data-dir given on resume is ignored; the run keeps the data directory it started with.")
    done = run.meta().get("epochs_done") or 0
    from core.train.distributed import env_world

    world = env_world()  # started by torchrun as one of several processes
    if world is not None:
        return scale.resume_torchrun(store, run, world, train_foreground)
    if scale.executor_choice(args) == "ray":
        return scale.resume_on_ray(store, run, args)
    print(f"resuming run {run.id} after epoch {done}")
    return train_foreground(run, store, requeue=True)


def cmd_cancel(args) -> int:
    from core.runs import JobRunner

    store = open_store(args)
    run = store.get(args.run_id)
    JobRunner(store, start_thread=False).cancel(run.id)
    print(f"cancel requested for run {run.id} (it was {run.meta().get('status')})")
    return 0
