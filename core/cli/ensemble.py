"""``python -m core ensemble RUN_ID RUN_ID ...``: average finished runs into a new run."""

from __future__ import annotations

from core.cli.common import add_dirs, fmt, open_store


def add_commands(sub) -> None:
    """Add ``ensemble`` to the subparsers ``sub``."""
    sp = sub.add_parser("ensemble", help="average the probabilities of finished runs into a new run")
    sp.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two or more completed runs of one dataset")
    sp.add_argument("--name", help="the new run's name (default: ensemble of N runs)")
    add_dirs(sp)
    sp.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    from core.experiments.ensemble import create_ensemble_run

    store = open_store(args)
    run = create_ensemble_run(store, args.run_ids, name=args.name, data_dir=args.data_dir)
    ev = run.eval() or {}
    members = run.params()["ensemble"]["members"]
    print(f"run {run.id}: the average of {len(members)} runs ({', '.join(members)})")
    for split in ("val", "test"):
        e = ev.get(split) or {}
        print(f"{split:>5}: ACC {fmt(e.get('acc'))}  AUC {fmt(e.get('auc'))}  (n={e.get('n')})")
    return 0
