"""Beyond one process: one run on N processes, and a sweep on the local executor vs Ray.

``python -m bench scale --processes 1 2 [--dataset bloodmnist] [--data-dir DIR]``

- **One run on N processes** (the ``processes`` setting, through the job runner: the worker
  is rank 0 and starts N - 1 followers; DDP over gloo on the CPU). Images/s is the epoch's
  training images over its ``epoch_seconds`` (one epoch's training and validation on rank 0's
  clock, so the all-reduce waits are in it; not ``train_seconds``, which is the running total),
  the median of the epochs after the first (the first pays for warm-up). The run's wall
  time, from the worker's start to its end, includes starting the processes.
- **A sweep of ``--sweep-runs`` runs** (seeds 0..n-1 of one setting, planned with
  :func:`core.experiments.plan_sweep` and driven by :func:`core.experiments.run_experiment`),
  timed from the driver's start to the last run's end, on: the local executor at its default
  concurrency (one run at a time on a CPU), the local executor two at a time (one thread
  each), and a Ray cluster started here with ``ray.init(num_cpus=--ray-cpus)`` (or
  ``--ray-address``), whose concurrency is the cluster's CPUs (one per run).

Each measurement is taken ``--repeats`` times, the cases alternating, and every figure is
printed, not only the best.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.machine import describe

WAIT_S = 1800.0


def add_arguments(p) -> None:
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to time one run on")
    p.add_argument("--dataset", default="bloodmnist", help="MedMNIST name for the one-run measurement")
    p.add_argument("--data-dir", help="where the MedMNIST .npz files are (default $STUDIO_DATA_DIR)")
    p.add_argument("--model", default="medvcnn")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the one-run measurement (at least 2)")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch, split between the processes")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    p.add_argument("--threads", type=int, help="torch threads of the one-process run (default: torch's own, one "
                                                "per core); a run on N processes gives each rank cores / N")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sweep-dataset", default="breastmnist")
    p.add_argument("--sweep-runs", type=int, default=4)
    p.add_argument("--sweep-epochs", type=int, default=3)
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster started for the sweep")
    p.add_argument("--ray-address", help="use this running Ray cluster instead of starting one here")
    p.add_argument("--skip", choices=["processes", "sweep", "local-2", "ray"], action="append", default=[],
                   help="leave out a part (repeatable)")


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def images_per_second(n_train: int, epochs: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """Training images over the median ``epoch_seconds`` of the epochs after the first.

    Args:
        n_train: training images of one epoch.
        epochs: the run's epoch records (``metrics.jsonl``), in order.

    Returns:
        (images per second, the seconds of the epochs it used).
    """
    timed = [float(e["epoch_seconds"]) for e in (epochs[1:] or epochs)]
    return n_train / statistics.median(timed), timed


def time_one_run(root: Path, processes: int, args) -> dict[str, Any]:
    """Train one run on ``processes`` processes through the job runner; its images/s and wall time.

    Raises:
        RuntimeError: the run did not complete (its error says why).
    """
    from core.runs import JobRunner, LocalProcessExecutor, RunStore
    from core.runs.submit import run_request

    store = RunStore(root / f"runs-p{processes}-{time.monotonic_ns()}")
    request = run_request(args.dataset, args.model, "default", data_dir=args.data_dir, epochs=args.epochs,
                          batch_size=args.batch_size, seed=0, device=args.device)
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else None
    runner = JobRunner(store, LocalProcessExecutor(env=env), max_concurrent=1, poll_interval=0.2)
    run_id = runner.submit({**request.params, "processes": processes})
    status = runner.wait(run_id, timeout=WAIT_S, interval=0.2)
    run = store.get(run_id)
    meta = run.meta()
    if status != "completed":
        raise RuntimeError(f"the {processes}-process run ended {status}: {meta.get('error')}")
    epochs = run.metrics(kind="epoch")
    rate, timed = images_per_second(meta["n_train"], epochs)
    return {"processes": processes, "n_train": meta["n_train"], "epochs": len(epochs),
            "epoch_seconds": timed, "images_per_s": rate,
            "wall_s": _seconds_between(meta.get("started"), meta.get("finished")),
            "backend": (meta.get("distributed") or {}).get("backend", "none (one process)")}


def time_sweep(root: Path, label: str, runner_for, args) -> dict[str, Any]:
    """Plan, store and drive a ``--sweep-runs`` sweep over seeds; its wall time.

    Args:
        root: a scratch folder (a new run store is made in it).
        label: what the executor is, for the printout.
        runner_for: ``store -> JobRunner``.

    Raises:
        RuntimeError: the experiment or one of its runs did not complete.
    """
    from core.experiments import create_experiment, plan_sweep, run_experiment
    from core.runs import RunStore

    store = RunStore(root / f"sweep-{time.monotonic_ns()}")
    exp = plan_sweep(args.sweep_dataset, {"seed": list(range(args.sweep_runs))}, model=args.model,
                     fixed={"epochs": args.sweep_epochs, "device": "cpu"}, data_dir=args.data_dir)
    exp = create_experiment(store, exp)
    runner = runner_for(store)
    start = time.perf_counter()
    done = run_experiment(store, exp.id, runner, poll_s=0.2)
    wall = time.perf_counter() - start
    statuses = [store.get(rid).meta().get("status") for rid in done.members]
    if done.status != "completed" or statuses.count("completed") != args.sweep_runs:
        raise RuntimeError(f"the sweep on {label} ended {done.status} with runs {statuses}: {done.error}")
    return {"executor": label, "runs": len(statuses), "wall_s": wall, "concurrency": runner.max_concurrent}


def _sweep_executors(args) -> tuple[list[tuple[str, Any]], Any]:
    """``(label, store -> runner)`` per executor, and a function that shuts Ray down (or None).

    The local Ray cluster is started on its first use, so its processes do not share the
    cores with the local executor's measurements that come before it.
    """
    from core.runs import JobRunner, LocalProcessExecutor

    out = [("local, default concurrency", lambda s: JobRunner(s, LocalProcessExecutor()))]
    if "local-2" not in args.skip:
        out.append(("local, 2 at a time, 1 thread each",
                    lambda s: JobRunner(s, LocalProcessExecutor(env={"OMP_NUM_THREADS": "1"}), max_concurrent=2)))
    if "ray" in args.skip:
        return out, None
    import ray

    from core.runs.ray_executor import NAMESPACE, RayExecutor

    address = [args.ray_address]

    def ray_runner(store):
        if address[0] is None:
            started = time.perf_counter()
            ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, namespace=NAMESPACE)
            address[0] = ray.get_runtime_context().gcs_address
            print(f"local Ray cluster with {args.ray_cpus} CPUs started in {time.perf_counter() - started:.1f} s "
                  f"(not counted in the sweep times)", flush=True)
        return JobRunner(store, RayExecutor(address[0]))

    where = f"started here, {args.ray_cpus} CPUs" if args.ray_address is None else args.ray_address
    out.append((f"Ray cluster ({where})", ray_runner))
    return out, (ray.shutdown if args.ray_address is None else None)


def _print_processes(rows: list[dict[str, Any]]) -> None:
    print("\n| processes | backend | images/s (each repeat) | best | run wall time, s (each repeat) |")
    print("|---|---|---|---|---|")
    for n in sorted({r["processes"] for r in rows}):
        mine = [r for r in rows if r["processes"] == n]
        ips = ", ".join(f"{r['images_per_s']:,.0f}" for r in mine)
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in mine if r["wall_s"] is not None)
        print(f"| {n} | {mine[0]['backend']} | {ips} | {max(r['images_per_s'] for r in mine):,.0f} | {walls} |")
    base = [r["images_per_s"] for r in rows if r["processes"] == min(r["processes"] for r in rows)]
    for n in sorted({r["processes"] for r in rows})[1:]:
        best = max(r["images_per_s"] for r in rows if r["processes"] == n)
        print(f"speed-up of {n} processes over {min(r['processes'] for r in rows)} (best of each): "
              f"{best / max(base):.2f}x")


def _print_sweep(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"\n| executor | at once | {runs}-run sweep wall time, s (each repeat) | best |")
    print("|---|---|---|---|")
    for label in dict.fromkeys(r["executor"] for r in rows):
        mine = [r for r in rows if r["executor"] == label]
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in mine)
        print(f"| {label} | {mine[0]['concurrency']} | {walls} | {min(r['wall_s'] for r in mine):.1f} |")


def run(args) -> int:
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch is warm-up and not timed)")
    args.data_dir = args.data_dir or os.environ.get("STUDIO_DATA_DIR")
    print(f"# scale | {describe()} | load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        if "processes" not in args.skip:
            threads = f"{args.threads} thread(s)" if args.threads else "torch's default threads"
            print(f"\n## one run on {args.dataset}, {args.model}, global batch {args.batch_size}, "
                  f"{args.epochs} epochs, device {args.device}; one process: {threads}", flush=True)
            rows = []
            for _ in range(args.repeats):
                for n in args.processes:
                    rows.append(time_one_run(root, n, args))
                    r = rows[-1]
                    print(f"processes {n}: {r['images_per_s']:,.0f} img/s (seconds per epoch "
                          f"{', '.join(f'{s:.2f}' for s in r['epoch_seconds'])}), wall {r['wall_s']:.1f} s",
                          flush=True)
            _print_processes(rows)
        if "sweep" not in args.skip:
            print(f"\n## a {args.sweep_runs}-run sweep (seeds) on {args.sweep_dataset}, {args.model}, "
                  f"{args.sweep_epochs} epochs each", flush=True)
            executors, shutdown = _sweep_executors(args)
            rows = []
            try:
                for _ in range(args.repeats):
                    for label, runner_for in executors:
                        rows.append(time_sweep(root, label, runner_for, args))
                        print(f"{label}: {rows[-1]['wall_s']:.1f} s", flush=True)
            finally:
                if shutdown is not None:
                    shutdown()
            _print_sweep(rows, args.sweep_runs)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (other processes share these cores)")
    return 0
