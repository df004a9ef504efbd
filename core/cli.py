"""``python -m core``: everything the studio does, as commands.

Each command prints a short human summary; bad arguments exit non-zero with one line and
no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from core.cli_scale import add_executor_arguments
from core.errors import StudioError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {message} (see `python -m core {self.prog.split()[-1]} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    return v


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="Train, compare and use medical image classifiers.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def dirs(sp, data=True):
        sp.add_argument("--runs-dir", help="where runs are kept (default $STUDIO_RUNS_DIR or ./runs)")
        if data:
            sp.add_argument("--data-dir", help="where MedMNIST files are kept (default $STUDIO_DATA_DIR or ~/.medmnist)")

    t = sub.add_parser("train", help="train a model in the foreground")
    t.add_argument("--dataset", required=True, help="a MedMNIST name (bloodmnist) or a path to an image folder or zip")
    t.add_argument("--model", required=True, help="a model name (python -m core models)")
    t.add_argument("--size", type=_positive_int, default=28, help="image size: 28, 64, 128 or 224")
    t.add_argument("--epochs", type=_positive_int, help="number of epochs (default: the recipe's)")
    t.add_argument("--recipe", default="default", help="default, paper, medmnist or a seed key (python -m core recipes)")
    t.add_argument("--seed", type=_positive_int, default=0)
    t.add_argument("--lr", type=_number, help="learning rate (default: the recipe's)")
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--optimizer")
    t.add_argument("--schedule")
    t.add_argument("--augment", help="none, light, flipshift, medvcnn or snet")
    t.add_argument("--max-minutes", type=_number, help="stop after this many minutes of training")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--precision", help="auto (mixed on CUDA, fp32 elsewhere), fp32, or bf16 "
                                       "(also on a CPU with native bf16 units, where it trains faster)")
    t.add_argument("--pretrained", action="store_true", help="start from ImageNet weights (needs a network)")
    t.add_argument("--name", help="a name for the run")
    dirs(t)
    add_executor_arguments(t, train=True)

    r = sub.add_parser("runs", help="list runs")
    r.add_argument("--dataset")
    r.add_argument("--model")
    r.add_argument("--status")
    dirs(r, data=False)

    for name, helptext in (("eval", "recompute and print a run's evaluation"),
                           ("resume", "resume an interrupted or cancelled run in the foreground"),
                           ("cancel", "cancel a queued or running run")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("run_id")
        dirs(sp, data=(name != "cancel"))
        if name == "resume":
            add_executor_arguments(sp, train=False)
        if name == "eval":
            sp.add_argument("--tta", action="store_true",
                            help="average each image with its mirror image (prints the scores; eval.json keeps "
                                 "the run's own evaluation)")
            sp.add_argument("--calibrated", action="store_true",
                            help="divide logits by the run's fitted temperature (prints the scores only)")

    sub.add_parser("models", help="list the architectures")
    d = sub.add_parser("datasets", help="list MedMNIST datasets and which files are present")
    d.add_argument("--data-dir")
    d.add_argument("--import", dest="import_file", help="import an official MedMNIST .npz file (MD5 checked)")
    sub.add_parser("recipes", help="list the training recipes")

    from core.cli_predict import add_predict_commands

    add_predict_commands(sub, dirs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one line (or --help)
        return int(exc.code or 0)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # eval / predict / export on too small a machine
        from core.train.oom import out_of_memory_message

        message = out_of_memory_message(exc, doing=f"`{args.command}`")
        if message is None:
            raise
        print(f"error: {message}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; `python -m core resume RUN_ID` continues a run from its last checkpoint.",
              file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------- commands
def _store(args):
    from core.runs import RunStore

    return RunStore(getattr(args, "runs_dir", None))


def cmd_train(args) -> int:
    from core.data import load_dataset
    from core.models import list_classical, list_models
    from core.train import build_params, make_config, validate

    if args.model not in list_models() and args.model not in list_classical():
        raise StudioError(f"unknown model '{args.model}'; choose one of: {', '.join(list_models() + list_classical())}.")
    cfg = make_config(args.dataset, args.model, args.recipe, image_size=args.size, epochs=args.epochs,
                      seed=args.seed, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                      schedule=args.schedule, augment=args.augment, max_minutes=args.max_minutes,
                      device=args.device, precision=args.precision, pretrained=args.pretrained or None, data_dir=args.data_dir)
    validate(cfg)
    # Load once here so a missing dataset fails before a run directory is made.
    load_dataset(cfg.dataset, size=cfg.image_size, data_dir=cfg.data_dir, seed=cfg.seed)
    store = _store(args)
    from core import cli_scale
    from core.train.distributed import env_world

    world = env_world()  # started by torchrun as one of several processes
    params = cli_scale.with_settings(build_params(cfg), args, world=world[1] if world else None)

    def announce(run) -> None:
        print(f"run {run.id}: {cfg.model} on {cfg.dataset} ({cfg.image_size} px), recipe {cfg.recipe}, "
              f"{cfg.epochs} epochs, seed {cfg.seed}")

    if world is not None:
        return cli_scale.train_torchrun(store, params, args.name, world, announce, _train_foreground)
    if cli_scale.executor_choice(args) == "ray":
        return cli_scale.train_on_ray(store, params, args.name, args)
    run = store.create_run(params, name=args.name)
    announce(run)
    return _train_foreground(run, store)


def _train_foreground(run, store, requeue: bool = False) -> int:
    import logging

    from core.runs import worker
    from core.train.distributed import training_function
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


def report_end(run) -> int:
    """Print how a run ended (its test scores when it completed); 0 for completed or cancelled."""
    meta = run.meta()
    status = meta.get("status")
    if status != "completed":
        print(f"run {run.id} ended {status}: {meta.get('error') or meta.get('stop_reason') or ''}".rstrip(": "))
        return 0 if status == "cancelled" else 1
    ev = run.eval() or {}
    test = ev.get("test", {})
    print(f"run {run.id} completed in {meta.get('train_seconds', 0):.1f} s "
          f"(best epoch {meta.get('best_epoch')}): test ACC {test.get('acc', float('nan')):.4f}, "
          f"AUC {test.get('auc', float('nan')):.4f}")
    return 0


class _DropFailedLine:
    """A logging filter that drops the worker's "run X failed: ..." record."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("run %s failed")


def cmd_runs(args) -> int:
    rows = _store(args).list_runs(dataset=args.dataset, model=args.model, status=args.status)
    if not rows:
        print("no runs yet; start one with `python -m core train --dataset breastmnist --model medvcnn`")
        return 0
    cols = [("run_id", "run"), ("status", "status"), ("dataset", "dataset"), ("model", "model"),
            ("image_size", "size"), ("epochs_done", "epochs"), ("test_acc", "test ACC"), ("test_auc", "test AUC")]
    _print_table([{label: "damaged" if key == "status" and row.get("damaged") else _fmt(row.get(key))
                   for key, label in cols} for row in rows])
    for row in rows:  # the other runs are listed as usual; these say what to fix
        if row.get("damaged"):
            print(f"damaged run {row['run_id']}: {row['damaged']}")
    return 0


def cmd_eval(args) -> int:
    from core.train.run import reevaluate_run

    store = _store(args)
    run = store.get(args.run_id)
    if args.tta or args.calibrated:
        from core.evaluate import evaluate_run

        ev = evaluate_run(run, tta=args.tta, calibrated=args.calibrated, data_dir=args.data_dir)
        mirrored = bool(next(iter(ev.values()), {}).get("tta"))
        if args.tta and not mirrored:
            print(f"run {run.id}: no mirror images, because its classes name left and right")
        print(f"run {run.id} evaluated with{'' if mirrored else 'out'} mirror images, "
              f"{'calibrated' if args.calibrated else 'uncalibrated'} (eval.json unchanged)")
    else:
        ev = reevaluate_run(run, store, data_dir=args.data_dir)
    for split in ("val", "test"):
        if split in ev:
            e = ev[split]
            print(f"{split:>5}: ACC {e['acc']:.4f}  AUC {_fmt(e['auc'])}  macro F1 {e['macro']['f1']:.4f}  "
                  f"kappa {e['kappa']:.4f}  log loss {e['log_loss']:.4f}  ECE {e['ece']:.4f}  (n={e['n']})")
    return 0


def cmd_resume(args) -> int:
    store = _store(args)
    run = store.get(args.run_id)
    status = run.meta().get("status")
    if status in ("completed", "running"):
        raise StudioError(f"run {run.id} is {status}; only interrupted, cancelled, failed or queued runs can be resumed.")
    if run.cancel_requested():
        run.clear_cancel()
    if args.data_dir:
        print("note: --data-dir given on resume is ignored; the run keeps the data directory it started with.")
    done = run.meta().get("epochs_done") or 0
    from core import cli_scale
    from core.train.distributed import env_world

    world = env_world()  # started by torchrun as one of several processes
    if world is not None:
        return cli_scale.resume_torchrun(store, run, world, _train_foreground)
    if cli_scale.executor_choice(args) == "ray":
        return cli_scale.resume_on_ray(store, run, args)
    print(f"resuming run {run.id} after epoch {done}")
    return _train_foreground(run, store, requeue=True)


def cmd_cancel(args) -> int:
    from core.runs import JobRunner

    store = _store(args)
    run = store.get(args.run_id)
    JobRunner(store, start_thread=False).cancel(run.id)
    print(f"cancel requested for run {run.id} (it was {run.meta().get('status')})")
    return 0


def cmd_models(args) -> int:
    from core.models import list_classical, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name, 3, 8, 28)
        rows.append({"model": name, "source": info.paper, "params (28px RGB, 8 classes)": f"{info.params:,}",
                     "description": info.description})
    for name in list_classical():
        rows.append({"model": name, "source": "scikit-learn", "params (28px RGB, 8 classes)": "-",
                     "description": "classical baseline on flattened pixels"})
    _print_table(rows)
    return 0


def cmd_datasets(args) -> int:
    from core.data import MEDMNIST_SIZES, import_npz, list_medmnist, medmnist_filename
    from core.paths import data_dir

    root = data_dir(args.data_dir)
    if args.import_file:
        path = import_npz(args.import_file, data_dir=root)
        print(f"imported {path.name} into {root} (MD5 checked)")
        return 0
    import medmnist

    rows = []
    for flag in list_medmnist():
        info = medmnist.INFO[flag]
        present = [str(s) for s in MEDMNIST_SIZES if (root / medmnist_filename(flag, s)).exists()]
        rows.append({"dataset": flag, "task": info["task"], "classes": len(info["label"]),
                     "channels": info["n_channels"], "train/val/test": "/".join(str(info["n_samples"][k]) for k in ("train", "val", "test")),
                     "sizes on disk": ", ".join(present) or "-"})
    print(f"data directory: {root}")
    _print_table(rows)
    return 0


def cmd_recipes(args) -> int:
    from core.train import RECIPES

    _print_table([{"recipe": r.name, "source": r.source, "description": r.description} for r in RECIPES.values()])
    print("`--recipe paper` picks the model's own paper recipe (seed models) or the default.")
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v == v else "n/a"
    return str(v)


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    width = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    width = {k: min(w, 70) for k, w in width.items()}
    print("  ".join(k.ljust(width[k]) for k in keys))
    for r in rows:
        print("  ".join(str(r.get(k, ""))[:width[k]].ljust(width[k]) for k in keys))


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "eval": cmd_eval, "resume": cmd_resume, "cancel": cmd_cancel,
            "models": cmd_models, "datasets": cmd_datasets, "recipes": cmd_recipes}


def register(name: str, fn) -> None:
    """Add a command implemented in another module (predict, export)."""
    COMMANDS[name] = fn
