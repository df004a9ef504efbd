"""Accuracy within a wall-clock budget: the studio's default recipe, several seeds, test
ACC / AUC beside the MedMNIST v2 table.

Each seed is a real run through the same path as the studio (``run_training``), in a
throw-away runs directory unless ``--runs-dir`` is given. The best epoch is chosen on the
validation split; the test split is evaluated once, at the end.
"""

from __future__ import annotations

import statistics
import tempfile

from bench.machine import describe
from bench.reference_table import SOURCE, rows_for


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="a MedMNIST name, e.g. bloodmnist")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per seed, in minutes")
    p.add_argument("--data-dir", help="where the MedMNIST .npz files are (default $STUDIO_DATA_DIR)")
    p.add_argument("--model", default="medvcnn")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipe", default="default")
    p.add_argument("--max-epochs", type=int, default=300, help="a cap; the time budget normally ends training")
    p.add_argument("--runs-dir", help="keep the runs here (default: a temporary directory)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one setting of the recipe, e.g. --set augment=flipshift --set ema=0 "
                        "(how the variants in BENCHMARKS.md were tried)")


def parse_overrides(pairs: list[str]) -> dict:
    """``["ema=0", "augment=light"]`` -> ``{"ema": 0, "augment": "light"}`` (JSON values, else text)."""
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set takes FIELD=VALUE, e.g. --set ema=0; got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def train_one(flag: str, model: str, size: int, recipe: str, seed: int, minutes: float, max_epochs: int | None,
              data_dir: str | None, runs_dir: str, overrides: dict | None = None,
              extra_callbacks: list | None = None) -> dict:
    from core.runs import RunStore
    from core.runs.worker import train_in_this_process as run_training  # records status and times
    from core.runs.submit import run_request

    request = run_request(flag, model, recipe, image_size=size, seed=seed, epochs=max_epochs,
                          max_minutes=minutes, data_dir=data_dir, device="cpu", **(overrides or {}))
    cfg = request.config
    store = RunStore(runs_dir)
    run = store.create_run(request.params, name=f"bench accuracy seed {seed}")
    run_training(run, store, extra_callbacks=extra_callbacks)
    meta, ev = run.meta(), run.eval() or {}
    if meta.get("status") != "completed":
        raise SystemExit(f"seed {seed}: run {run.id} ended {meta.get('status')}: {meta.get('error')}")
    plan = meta.get("batch_plan") or {}
    return {"seed": seed, "run": run.id, "epochs": meta.get("epochs_done"), "best_epoch": meta.get("best_epoch"),
            "seconds": float(meta.get("train_seconds") or 0.0), "batch": plan.get("batch_size", cfg.batch_size),
            "val_acc": ev["val"]["acc"], "val_auc": ev["val"]["auc"],
            "acc": ev["test"]["acc"], "auc": ev["test"]["auc"]}


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def run(args) -> int:
    flag = args.dataset.lower()
    overrides = parse_overrides(args.set)
    print(f"# {describe()}")
    print(f"# {args.model} on {flag} {args.size}px, recipe {args.recipe}, {args.minutes:g} min per seed, "
          f"seeds {args.seeds}" + (f", changed: {overrides}" if overrides else ""))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        for seed in args.seeds:
            r = train_one(flag, args.model, args.size, args.recipe, seed, args.minutes, args.max_epochs,
                          args.data_dir, args.runs_dir or tmp, overrides)
            results.append(r)
            print(f"seed {seed}: {r['epochs']} epochs in {r['seconds']:.0f} s (best epoch {r['best_epoch']}), "
                  f"val ACC {r['val_acc']:.4f} AUC {r['val_auc']:.4f}, test ACC {r['acc']:.4f} AUC {r['auc']:.4f}",
                  flush=True)
    print()
    print(f"| method | test ACC | test AUC |")
    print(f"|---|---|---|")
    print(f"| studio {args.model}, {args.recipe} recipe, {args.minutes:g} min (mean ± std, {len(results)} seeds) | "
          f"{_mean_std([r['acc'] for r in results])} | {_mean_std([r['auc'] for r in results])} |")
    for row in rows_for(flag):
        print(f"| {row['method']} | {row['acc']:.3f} | {row['auc']:.3f} |")
    print(f"(reference rows: {SOURCE})")
    return 0
