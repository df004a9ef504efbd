"""Peak resident memory of a training worker: the studio's own worker process, sampled.

``python -m bench memory --dataset NAME --size S [--data-dir DIR]`` creates a run in a
scratch runs folder and starts it exactly as the studio's job runner does
(``LocalProcessExecutor`` -> ``python -m core.runs.worker RUN_DIR``). It samples the worker's
``VmRSS`` and ``VmHWM`` from ``/proc`` while it loads the dataset and trains, asks it to
cancel after ``--steps`` steps (or ``--max-minutes``), and reads the kernel's own peak
(``ru_maxrss``) when it exits. The last line is the peak and whether it is under 4 GB.

Resident memory counts the process's own pages and the file pages it has mapped; the
kernel's page cache that serves ``read`` calls is not part of it (that memory is shared
and is given back whenever another process needs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from bench.machine import describe

LIMIT_MB = 4096


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="a MedMNIST name, e.g. pathmnist")
    p.add_argument("--size", type=int, default=28, help="image side: 28, 64, 128 or 224")
    p.add_argument("--data-dir", help="where the .npz is (default $STUDIO_DATA_DIR)")
    p.add_argument("--model", default="medvcnn")
    p.add_argument("--steps", type=int, default=200, help="training steps before the run is cancelled")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--max-minutes", type=float, default=30.0, help="cancel after this long even if --steps are not done")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between samples")


def proc_status_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a live process in MB (empty once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024  # kB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def run(args) -> int:
    from core.paths import data_dir
    from core.runs import RunStore
    from core.runs.jobs import LocalProcessExecutor
    from core.train import build_params, make_config, validate

    root = data_dir(args.data_dir)
    cfg = make_config(args.dataset, args.model, "default", image_size=args.size, epochs=1,
                      batch_size=args.batch_size, device=args.device, data_dir=str(root),
                      log_every=1)  # a step line each step: the watcher counts them
    validate(cfg)
    print(f"# {describe()}")
    npz = sorted(root.glob(f"{args.dataset}{'' if args.size == 28 else f'_{args.size}'}.npz"))
    size_note = f"{npz[0].stat().st_size / 1024**3:.2f} GiB .npz" if npz else "file not found yet"
    print(f"# {args.model} on {args.dataset} {args.size} px ({size_note} in {root}), batch {args.batch_size}, "
          f"{args.steps} steps, device {args.device}")
    record = root / ".cache" / f"{args.dataset}_{args.size}" / "source.json"
    stamp = record.stat().st_mtime_ns if record.exists() else None
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        store = RunStore(scratch / "runs")
        run_ = store.create_run(build_params(cfg), name="bench-memory")
        proc = LocalProcessExecutor().start(run_)
        result = _watch(proc, run_, args)
        status = run_.meta().get("status")
        if not record.exists():
            print("images held in memory (below the on-disk threshold)")
        else:
            when = "reused" if record.stat().st_mtime_ns == stamp else "converted by this worker"
            print(f"images read from disk: {record.parent} ({when})")
        print(f"worker exit status {result['exit']}, run {status}, {result['steps']} steps, "
              f"loading {result['load_s']:.0f} s, training {result['train_s']:.0f} s")
        print(f"peak VmRSS sampled: loading the dataset {result['load_peak']:.0f} MB, training {result['train_peak']:.0f} MB; "
              f"VmHWM {result['hwm']:.0f} MB")
        if status == "failed":
            print(f"the run failed: {run_.meta().get('error')}")
            print((run_.log_path.read_text(errors="replace"))[-3000:])
            return 2
        peak = max(result["maxrss"], result["hwm"], result["load_peak"], result["train_peak"])
        under = peak < LIMIT_MB
        print(f"peak RSS {peak:.0f} MB (ru_maxrss of the worker); under {LIMIT_MB} MB: {'yes' if under else 'NO'}")
        return 0 if under else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _watch(proc, run_, args) -> dict:
    """Sample the worker until it exits; cancel it after ``--steps`` steps or the time limit."""
    pid, t0 = proc.pid, time.monotonic()
    out = {"load_peak": 0.0, "train_peak": 0.0, "hwm": 0.0, "steps": 0, "load_s": 0.0, "train_s": 0.0}
    loaded_at = cancelled = None
    seen = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen in step
            out["exit"], out["maxrss"] = proc.returncode, usage.ru_maxrss / 1024  # kB on Linux
            break
        mem = proc_status_mb(pid)
        steps = _steps(run_)
        if loaded_at is None and (steps or _loaded(run_)):
            loaded_at = time.monotonic()  # the dataset is loaded and the model built
        key = "train_peak" if loaded_at is not None else "load_peak"
        out[key] = max(out[key], mem.get("VmRSS", 0.0))
        out["hwm"] = max(out["hwm"], mem.get("VmHWM", 0.0))
        out["steps"] = max(out["steps"], steps)
        if steps - seen >= max(1, args.steps // 20):
            seen = steps
            print(f"  step {steps}: VmRSS {mem.get('VmRSS', 0):.0f} MB, VmHWM {mem.get('VmHWM', 0):.0f} MB", flush=True)
        too_long = time.monotonic() - t0 > args.max_minutes * 60
        if cancelled is None and (steps >= args.steps or too_long):
            run_.request_cancel()
            cancelled = time.monotonic()
        elif cancelled is not None and time.monotonic() - cancelled > 120:
            os.killpg(pid, signal.SIGTERM)  # the worker missed the cancel; SIGTERM ends it cleanly
            cancelled = float("inf")
        time.sleep(args.interval)
    end = time.monotonic()
    out["load_s"] = (loaded_at or end) - t0
    out["train_s"] = end - loaded_at if loaded_at else 0.0
    return out


def _loaded(run_) -> bool:
    try:
        return "n_train" in run_.meta()  # written by run_training once the dataset is loaded
    except Exception:  # meta.json is replaced atomically, but be patient anyway
        return False


def _steps(run_) -> int:
    try:
        steps = run_.metrics(kind="step")
    except Exception:  # the file is being appended to; read it again at the next sample
        return 0
    return max((int(r.get("step", 0)) for r in steps), default=0)
