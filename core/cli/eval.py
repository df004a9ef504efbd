"""``python -m core eval``: recompute a run's evaluation (or print it with TTA / calibration)."""

from __future__ import annotations

from core.cli.common import add_dirs, fmt, open_store


def add_commands(sub) -> None:
    """Add ``eval`` to the subparsers ``sub``."""
    sp = sub.add_parser("eval", help="recompute and print a run's evaluation")
    sp.add_argument("run_id")
    add_dirs(sp)
    sp.add_argument("--tta", action="store_true",
                    help="average each image with its mirror image (prints the scores; eval.json keeps "
                         "the run's own evaluation)")
    sp.add_argument("--calibrated", action="store_true",
                    help="divide logits by the run's fitted temperature (prints the scores only)")
    sp.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from core.train.evaluation import reevaluate_run

    store = open_store(args)
    run = store.get(args.run_id)
    if args.tta or args.calibrated:
        from core.train.evaluation import evaluate_run

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
            print(f"{split:>5}: ACC {e['acc']:.4f}  AUC {fmt(e['auc'])}  macro F1 {e['macro']['f1']:.4f}  "
                  f"kappa {e['kappa']:.4f}  log loss {e['log_loss']:.4f}  ECE {e['ece']:.4f}  (n={e['n']})")
    return 0
