"""``python -m core sweep | seeds | ablation | auto | experiments | experiment``.

The four that start an experiment plan it (every run's settings checked first), store it,
and drive it in this process through the job runner (``--executor``, ``--concurrency``),
printing a line whenever a run ends and closing with the best run (picked on validation)
and its val / test ACC and AUC. Ctrl-C cancels the experiment's unfinished runs.
"""

from __future__ import annotations

import sys
from typing import Any

import core.cli.scale as scale
from core.cli.common import add_dirs, fmt, number, open_store, positive_int, print_table
from core.errors import StudioError


def add_commands(sub) -> None:
    """Add the experiment commands to the subparsers ``sub``."""
    s = sub.add_parser("sweep", help="train every combination of some settings (a grid, or random draws)")
    s.add_argument("--dataset", required=True, help="a MedMNIST name or a path to an image folder or zip")
    s.add_argument("--model", help="the model, when the grid does not vary it (model=a,b)")
    s.add_argument("--grid", nargs="+", required=True, metavar="FIELD=V1,V2",
                   help="any training setting with its values, e.g. model=medvcnn,resnet18 lr=1e-3,3e-3 epochs=5")
    s.add_argument("--seeds", type=positive_int, help="train each combination with seeds 0..N-1")
    s.add_argument("--random", type=positive_int, help="train N combinations drawn at random instead of all")
    s.add_argument("--recipe", default="default", help="the recipe every run starts from")
    _common(s)
    s.set_defaults(func=cmd_sweep)

    d = sub.add_parser("seeds", help="train a run's settings again with N other seeds: mean, std, 95 % interval")
    d.add_argument("run_id")
    d.add_argument("--n", type=positive_int, default=3, help="how many seeds (default 3)")
    _common(d, data=False)
    d.set_defaults(func=cmd_seeds)

    a = sub.add_parser("ablation", help="a seed paper's study, each variant with the same seeds, beside its claims")
    a.add_argument("--model", required=True, help="arn_cnn, medvcnn / medvlstm, bloodcnn / cnn_lstm or quadsnet")
    a.add_argument("--dataset", required=True)
    a.add_argument("--seeds", type=positive_int, default=3, help="seeds per variant (default 3)")
    a.add_argument("--recipe", default="paper", help="paper (default: the reference model's recipe) or any recipe")
    a.add_argument("--epochs", type=positive_int)
    a.add_argument("--size", type=positive_int, help="image size (default 28)")
    _common(a)
    a.set_defaults(func=cmd_ablation)

    u = sub.add_parser("auto", help="find the best model for a dataset in a time budget (chosen on validation)")
    u.add_argument("--dataset", required=True)
    u.add_argument("--minutes", type=number, default=15.0, help="wall-clock budget (default 15)")
    u.add_argument("--seed", type=positive_int, default=0, help="seed of the search and of every trial")
    u.add_argument("--max-trials", type=positive_int, help="stop after this many trials")
    _common(u)
    u.set_defaults(func=cmd_auto)

    e = sub.add_parser("experiments", help="list experiments")
    e.add_argument("--kind", choices=("sweep", "seeds", "ablation", "auto"))
    add_dirs(e, data=False)
    e.set_defaults(func=cmd_experiments)

    x = sub.add_parser("experiment", help="an experiment's leaderboard (and its summary or ablation table)")
    x.add_argument("exp_id")
    x.add_argument("--cancel", action="store_true", help="cancel its queued and running runs")
    add_dirs(x, data=False)
    x.set_defaults(func=cmd_experiment)


def _common(sp, data: bool = True) -> None:
    sp.add_argument("--concurrency", type=positive_int,
                    help="runs trained at once (default: 1 on a CPU, one per GPU, a Ray cluster's size)")
    sp.add_argument("--metric", default="val_auc", choices=("val_auc", "val_acc"),
                    help="the validation metric runs are ranked by (default val_auc)")
    sp.add_argument("--name", help="a name for the experiment")
    add_dirs(sp, data=data)
    scale.add_executor_arguments(sp, train=False)


# ---------------------------------------------------------------------------- commands
def cmd_sweep(args) -> int:
    from core.experiments import parse_grid, plan_sweep

    exp = plan_sweep(args.dataset, parse_grid(args.grid), model=args.model, recipe=args.recipe, seeds=args.seeds,
                     random_draws=args.random, name=args.name, metric=args.metric, data_dir=args.data_dir)
    return _drive(args, exp)


def cmd_seeds(args) -> int:
    from core.experiments import plan_seeds

    exp = plan_seeds(open_store(args), args.run_id, n=args.n, name=args.name, metric=args.metric)
    return _drive(args, exp)


def cmd_ablation(args) -> int:
    from core.experiments import plan_ablation

    fixed = {k: v for k, v in (("epochs", args.epochs), ("image_size", args.size)) if v is not None}
    exp = plan_ablation(args.dataset, args.model, seeds=args.seeds, recipe=args.recipe, fixed=fixed, name=args.name,
                        metric=args.metric, data_dir=args.data_dir)
    return _drive(args, exp)


def cmd_auto(args) -> int:
    from core.experiments import plan_auto

    exp = plan_auto(args.dataset, args.minutes, seed=args.seed, max_trials=args.max_trials, name=args.name,
                    metric=args.metric, data_dir=args.data_dir)
    return _drive(args, exp)


def _drive(args, exp) -> int:
    from core.experiments import create_experiment, estimate_experiment, run_experiment
    from core.runs import JobRunner
    from core.runs.jobs import make_executor

    store = open_store(args)
    executor = make_executor(scale.executor_choice(args), getattr(args, "ray_address", None))
    runner = JobRunner(store, executor, max_concurrent=args.concurrency)
    est = estimate_experiment(store, exp, concurrency=runner.max_concurrent)
    create_experiment(store, exp)
    planned = f"{est['runs']} runs" if est["runs"] is not None else "trials until the budget is spent"
    guess = "" if est["source"] == "budget" else f" ({est['source']} estimate)"
    print(f"experiment {exp.id}: {exp.kind} on {exp.dataset}, {planned}, {runner.max_concurrent} at a time, "
          f"about {est['seconds'] / 60:.1f} min{guess}", flush=True)
    progress = _Progress(store, exp)
    try:
        done = run_experiment(store, exp.id, runner, progress=progress)
    except KeyboardInterrupt:
        print(f"experiment {exp.id} cancelled; `python -m core experiment {exp.id}` shows what finished",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
    print(f"experiment {exp.id} {done.status}" + (f": {done.error}" if done.error else ""))
    _print_extras(store, done)
    return _print_best(store, done)


class _Progress:
    """A line each time a member run ends (and a bar on a terminal)."""

    def __init__(self, store, exp):
        self.store, self.exp, self.reported = store, exp, set()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            total = len(exp.planned_runs) or None
            self.bar = tqdm(total=total, unit="run", desc=exp.kind, file=sys.stderr)

    def __call__(self, snap: dict[str, Any]) -> None:
        from core.experiments import ExperimentBook, leaderboard

        rows = leaderboard(self.store, ExperimentBook(self.store).get(self.exp.id))
        for row in rows:
            if row["run_id"] in self.reported or row.get("status") in ("queued", "running"):
                continue
            self.reported.add(row["run_id"])
            best = snap.get("best") or {}
            line = (f"[{len(self.reported)}{'/' + str(snap['planned']) if snap.get('planned') else ''}] "
                    f"{row['run_id']} {row['status']}: {row.get('label') or ''} - val ACC {fmt(row.get('val_acc'))} "
                    f"AUC {fmt(row.get('val_auc'))}; best so far {best.get('run_id', '-')} ({fmt(best.get('score'))}), "
                    f"{snap['elapsed_s'] / 60:.1f} min")
            if self.bar is not None:
                self.bar.update(1)
                self.bar.write(line)
            else:
                print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_best(store, exp) -> int:
    from core.experiments import leaderboard, select_best

    best = select_best(leaderboard(store, exp), exp.metric)
    if best is None:
        print("no run completed, so there is no best run")
        return 1
    print(f"best run {best['run_id']} (chosen on {exp.metric.replace('_', ' ')}): "
          f"val ACC {fmt(best.get('val_acc'))} AUC {fmt(best.get('val_auc'))}, "
          f"test ACC {fmt(best.get('test_acc'))} AUC {fmt(best.get('test_auc'))}")
    return 0


def _print_extras(store, exp) -> None:
    """The kind's own summary: seeds' mean ± std, the ablation table, Auto's choices."""
    from core.experiments import ablation_table, parameter_importances, seeds_summary

    try:
        if exp.kind == "seeds":
            summary = seeds_summary(store, exp)
            print_table([{"metric": k, "mean": fmt(v["mean"]), "std": fmt(v["std"]), "n": v["n"],
                          "95 % interval": f"{fmt(v['low'])} .. {fmt(v['high'])}"}
                         for k, v in summary.items() if k.split(".")[1] in ("acc", "auc", "macro_f1", "log_loss")])
        elif exp.kind == "ablation":
            rows = ablation_table(store, exp)
            print_table([{"variant": f"{r['variant']} vs {r['reference']}", "metric": r["metric"],
                          "measured": fmt(r["difference"]), "paper": fmt(r["paper_difference"]),
                          "verdict": r["verdict"]} for r in rows])
            if rows:
                print(rows[0]["claim_note"])
        elif exp.kind == "auto":
            space = exp.plan.get("space") or {}
            arches = ", ".join(a["arch"] for a in space.get("arches", []))
            print(f"searched: {arches or '-'}")
            importances = parameter_importances(store, exp)
            if importances:
                print("settings that mattered: " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    except StudioError as exc:
        print(f"({exc})")


def cmd_experiments(args) -> int:
    from core.experiments import list_experiments

    rows = list_experiments(open_store(args), kind=args.kind)
    if not rows:
        print("no experiments yet; start one with `python -m core auto --dataset breastmnist --minutes 15`")
        return 0
    print_table([{"experiment": r["exp_id"], "name": r["name"], "kind": r["kind"], "dataset": r["dataset"],
                  "status": r["status"], "runs": f"{r['members']}/{r['planned']}" if r["planned"] else r["members"]}
                 for r in rows])
    return 0


def cmd_experiment(args) -> int:
    from core.experiments import cancel_experiment, get_experiment, leaderboard

    store = open_store(args)
    if args.cancel:
        sent = cancel_experiment(store, args.exp_id)
        print(f"experiment {args.exp_id}: cancel sent to {len(sent)} run(s)")
    exp = get_experiment(store, args.exp_id)
    print(f"experiment {exp.id}: {exp.name} ({exp.kind} on {exp.dataset}), {exp.status}, "
          f"ranked by {exp.metric.replace('_', ' ')}")
    rows = leaderboard(store, exp)
    if not rows:
        print("no runs yet")
        return 0
    print_table([{"rank": fmt(r["rank"]), "run": r["run_id"], "settings": r.get("label") or "", "status": r["status"],
                  "val ACC": fmt(r.get("val_acc")), "val AUC": fmt(r.get("val_auc")),
                  "test ACC": fmt(r.get("test_acc")), "test AUC": fmt(r.get("test_auc")),
                  "seconds": fmt(r.get("train_seconds"))} for r in rows])
    _print_extras(store, exp)
    if exp.status in ("completed", "cancelled", "failed", "interrupted"):
        _print_best(store, exp)
    return 0
