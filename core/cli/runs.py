"""``python -m core runs``: the run list, with damaged runs named and what to fix."""

from __future__ import annotations

from core.cli.common import add_dirs, fmt, open_store, print_table


def add_commands(sub) -> None:
    """Add ``runs`` to the subparsers ``sub``."""
    r = sub.add_parser("runs", help="list runs")
    r.add_argument("--dataset")
    r.add_argument("--model")
    r.add_argument("--status")
    add_dirs(r, data=False)
    r.set_defaults(func=cmd_runs)


def cmd_runs(args) -> int:
    rows = open_store(args).list_runs(dataset=args.dataset, model=args.model, status=args.status)
    if not rows:
        print("no runs yet; start one with `python -m core train --dataset breastmnist --model medvcnn`")
        return 0
    cols = [("run_id", "run"), ("status", "status"), ("dataset", "dataset"), ("model", "model"),
            ("image_size", "size"), ("epochs_done", "epochs"), ("test_acc", "test ACC"), ("test_auc", "test AUC")]
    print_table([{label: "damaged" if key == "status" and row.get("damaged") else fmt(row.get(key))
                  for key, label in cols} for row in rows])
    for row in rows:  # the other runs are listed as usual; these say what to fix
        if row.get("damaged"):
            print(f"damaged run {row['run_id']}: {row['damaged']}")
    return 0
