"""Auto within a wall-clock budget, several seeds, beside the MedMNIST v2 table and beside the
best single default-recipe run given the same minutes.

``python -m bench auto --dataset NAME --minutes 15 [--seeds 0 1 2] [--baseline]``. NAME is a
MedMNIST flag, an image folder, or ``generated`` (bench.short's stripe patterns, a dataset no
code of the studio has seen). Each seed is one Auto experiment through the job runner, exactly
as ``python -m core auto`` runs it; the best trial is chosen on validation only and only its
test scores are reported (every trial's eval.json holds test figures, none of which is read
before the choice).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import describe
from bench.reference_table import SOURCE, rows_for


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="a MedMNIST name, an image folder, or 'generated'")
    p.add_argument("--minutes", type=float, default=15.0, help="Auto's wall-clock budget per seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", help="where the MedMNIST .npz files are (default $STUDIO_DATA_DIR)")
    p.add_argument("--runs-dir", help="keep the runs here (default: a temporary directory)")
    p.add_argument("--concurrency", type=int, help="trials at once (default: the job runner's)")
    p.add_argument("--baseline", action="store_true",
                   help="also train the default recipe (medvcnn) for the same minutes per seed")


def auto_one(dataset: str, minutes: float, seed: int, data_dir: str | None, runs_dir: str,
             concurrency: int | None) -> dict:
    """One Auto experiment; its best trial (on validation) and what the search did."""
    from core.experiments import create_experiment, leaderboard, plan_auto, run_experiment, select_best
    from core.runs import JobRunner, RunStore

    store = RunStore(runs_dir)
    exp = create_experiment(store, plan_auto(dataset, minutes, seed=seed, data_dir=data_dir))
    start = time.monotonic()
    done = run_experiment(store, exp.id, JobRunner(store, max_concurrent=concurrency), poll_s=1.0)
    wall = time.monotonic() - start
    rows = leaderboard(store, done)
    best = select_best(rows, done.metric)
    if best is None:
        raise SystemExit(f"seed {seed}: Auto found no completed trial ({done.error})")
    params = store.get(best["run_id"]).params()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"seed": seed, "exp": done.id, "run": best["run_id"], "wall_s": wall, "trials": len(rows), "counts": counts,
            "choice": params.get("experiment_label"), "arches": [a["arch"] for a in done.plan["space"]["arches"]],
            "val_acc": best["val_acc"], "val_auc": best["val_auc"], "acc": best["test_acc"], "auc": best["test_auc"]}


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def run(args) -> int:
    print(f"# {describe()}")
    print(f"# Auto on {args.dataset}, {args.minutes:g} min per seed, seeds {args.seeds}")
    results, baseline = [], []
    with tempfile.TemporaryDirectory(prefix="bench-auto-") as tmp:
        dataset = args.dataset
        if dataset == "generated":
            from bench.short import write_generated_folder

            dataset = str(write_generated_folder(Path(tmp) / "generated"))
        runs_dir = args.runs_dir or str(Path(tmp) / "runs")
        for seed in args.seeds:
            r = auto_one(dataset, args.minutes, seed, args.data_dir, runs_dir, args.concurrency)
            results.append(r)
            print(f"seed {seed}: {r['trials']} trials {r['counts']} in {r['wall_s']:.0f} s; searched "
                  f"{', '.join(r['arches'])}; best {r['run']} = {r['choice']}: val ACC {r['val_acc']:.4f} "
                  f"AUC {r['val_auc']:.4f}, test ACC {r['acc']:.4f} AUC {r['auc']:.4f}", flush=True)
            if args.baseline:
                from bench.accuracy import train_one
                from core.experiments.auto import FINAL_MAX_EPOCHS

                # The same minutes, and the epoch cap of Auto's final run (the recipe's own 30
                # epochs end in about a minute on bloodmnist, which is not "the same 15 minutes").
                b = train_one(dataset, "medvcnn", 28, "default", seed, args.minutes, FINAL_MAX_EPOCHS, args.data_dir,
                              runs_dir)
                baseline.append(b)
                print(f"seed {seed}: default recipe alone for {args.minutes:g} min: {b['epochs']} epochs in "
                      f"{b['seconds']:.0f} s, test ACC {b['acc']:.4f} AUC {b['auc']:.4f}", flush=True)
    print()
    print("| method | test ACC | test AUC |")
    print("|---|---|---|")
    acc, auc = [r["acc"] for r in results], [r["auc"] for r in results]
    print(f"| studio Auto, {args.minutes:g} min (mean ± std, {len(results)} seeds) | {_mean_std(acc)} | "
          f"{_mean_std(auc)} |")
    if baseline:
        print(f"| default recipe alone, {args.minutes:g} min | {_mean_std([b['acc'] for b in baseline])} | "
              f"{_mean_std([b['auc'] for b in baseline])} |")
    table = rows_for(Path(args.dataset).name.lower())
    for row in table:
        print(f"| {row['method']} | {row['acc']:.3f} | {row['auc']:.3f} |")
    if table:
        m_acc, m_auc = statistics.mean(acc), statistics.mean(auc)
        beaten = [r["method"] for r in table if m_acc > r["acc"] and m_auc > r["auc"]]
        print(f"(reference rows: {SOURCE}) Auto's mean beats {len(beaten)} of {len(table)} rows on both ACC and AUC")
    if baseline:
        better = statistics.mean(acc) > statistics.mean([b["acc"] for b in baseline]) and \
            statistics.mean(auc) > statistics.mean([b["auc"] for b in baseline])
        print(f"Auto {'beats' if better else 'does not beat'} the default recipe alone on both ACC and AUC")
    return 0
