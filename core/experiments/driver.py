"""Running an experiment: a loop that submits its runs to the job runner and follows them.

The same loop serves every kind. Sweep, seeds and ablation submit their planned runs in
order, never more at once than the runner can train (and, in the demo, than the visitor may
have queued); Auto asks Optuna for each next trial (:mod:`core.experiments.auto`). The loop
runs in the foreground for ``python -m core sweep ...`` (:func:`run_experiment`) or in its own
detached process for the pages (:func:`launch_experiment`,
``python -m core.experiments.driver RUNS_DIR EXP_ID``), so an experiment outlives the
browser tab that started it. Members are ordinary runs, trained by whichever executor the
runner has (local processes, Ray).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from core.errors import StudioError
from core.experiments.record import FINAL_STATUSES, Experiment, ExperimentBook, parse_time, utc_now
from core.experiments.members import member_params, member_rows
from core.experiments.summary import leaderboard, select_best

ACTIVE = ("queued", "running")
_REPO_ROOT = Path(__file__).resolve().parents[2]
Progress = Callable[[dict[str, Any]], None]


class PlannedRuns:
    """Sweep, seeds and ablation: submit the plan's runs in order."""

    def __init__(self, exp: Experiment, submitted: set[int]):
        self.todo = [i for i in range(len(exp.planned_runs)) if i not in submitted]

    def next_jobs(self, exp: Experiment, free: int, rows: list[dict[str, Any]]) -> list[tuple[dict, str]]:
        jobs = []
        for i in self.todo[:free]:
            entry = exp.planned_runs[i]
            jobs.append((member_params(exp, entry, item=i), f"{exp.name} · {entry['label']}"[:200]))
        return jobs

    def submitted(self, ids: list[str]) -> None:
        del self.todo[:len(ids)]

    def observe(self, rows: list[dict[str, Any]], runner: Any) -> None:
        pass

    def done(self, rows: list[dict[str, Any]]) -> bool:
        return not self.todo


def _strategy(store: Any, book: ExperimentBook, exp: Experiment, runner: Any):
    rows = member_rows(store, exp)
    if exp.kind == "auto":
        from core.experiments.auto import AutoSearch

        return AutoSearch(store, book, exp, runner, rows)
    submitted = set()
    for row in rows:
        try:
            item = store.get(row["run_id"]).params().get("experiment_item")
        except StudioError:
            continue
        if isinstance(item, int):
            submitted.add(item)
    return PlannedRuns(exp, submitted)


def slots(runner: Any, store: Any, owner: str | None, active: int) -> int:
    """How many more members may be queued now: the runner's capacity, and in the demo the
    visitor's queue (``max_active_runs``) counting their runs outside this experiment too."""
    from core.limits import current_limits

    free = runner.max_concurrent - active
    cap = current_limits().max_active_runs
    if cap is not None:
        mine = [r for r in store.list_runs(status=list(ACTIVE)) if r.get("owner") == owner]
        free = min(free, cap - len(mine))
    return max(0, free)


def run_experiment(store: Any, exp_id: str, runner: Any = None, *, poll_s: float = 1.0,
                   progress: Progress | None = None) -> Experiment:
    """Drive an experiment to its end in this process (what the CLI and the driver process do).

    Args:
        store: the run store.
        exp_id: a stored experiment (:func:`create_experiment`).
        runner: the :class:`core.runs.JobRunner` to submit to; None makes one with the
            configured executor (``$STUDIO_EXECUTOR``).
        poll_s: seconds between passes.
        progress: called after each pass with :func:`snapshot`'s dict.

    Returns:
        The experiment as it ended (``completed``, ``failed`` or ``cancelled``).
    """
    from core.runs import JobRunner

    book = ExperimentBook(store)
    exp = book.get(exp_id)
    if exp.status in ("completed", "cancelled"):
        raise StudioError(f"experiment {exp_id} is {exp.status} already; plan a new one to train more")
    runner = runner or JobRunner(store)
    exp = book.update(exp_id, status="running", started=exp.started or utc_now(), finished=None, error=None,
                      driver=_this_process())
    try:
        strategy = _strategy(store, book, exp, runner)
        while True:
            exp = book.get(exp_id)
            if exp.cancel_requested:
                _cancel_members(store, exp, runner)
                _wait_until_stopped(store, exp, runner, poll_s)
                exp = book.update(exp_id, status="cancelled", finished=utc_now())
                break
            runner.poll()
            rows = member_rows(store, exp)
            strategy.observe(rows, runner)
            active = sum(1 for r in rows if r.get("status") in ACTIVE)
            free = slots(runner, store, exp.owner, active)
            if free and not strategy.done(rows):
                jobs = strategy.next_jobs(exp, free, rows)
                if jobs:
                    ids = _submit(runner, jobs, exp.owner)
                    strategy.submitted(ids)
                    exp = book.update(exp_id, add_members=ids)
                    continue
            if progress is not None:
                progress(snapshot(store, exp, rows))
            if strategy.done(rows) and active == 0:
                # Auto may add a member that trains nothing (an ensemble of its best runs).
                added = strategy.before_finish(exp, rows) if hasattr(strategy, "before_finish") else []
                if added:
                    exp = book.update(exp_id, add_members=added)
                exp = _finish(store, book, exp)
                break
            time.sleep(poll_s)
    except BaseException as exc:
        reason = "stopped by the person who ran it" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        try:
            exp = book.get(exp_id)
            _cancel_members(store, exp, runner)
            book.update(exp_id, status="cancelled" if isinstance(exc, KeyboardInterrupt) else "failed",
                        finished=utc_now(), error=f"the experiment's driver ended ({reason}); its unfinished runs "
                                                  "were cancelled and can be resumed one by one")
        finally:
            raise
    if progress is not None:
        progress(snapshot(store, exp))
    return exp


def _submit(runner: Any, jobs: list[tuple[dict, str]], owner: str | None) -> list[str]:
    ids = []
    for params, name in jobs:
        try:
            ids.append(runner.submit(params, name=name, owner=owner))
        except StudioError as exc:
            if "at a time" in str(exc) and ids:  # the demo queue filled meanwhile: the rest waits a pass
                break
            raise
    return ids


def _finish(store: Any, book: ExperimentBook, exp: Experiment) -> Experiment:
    rows = member_rows(store, exp)
    best = select_best(rows, exp.metric)
    if best is None:
        errors = "; ".join(sorted({str(r.get("error")) for r in rows if r.get("error")}))[:400]
        return book.update(exp.id, status="failed", finished=utc_now(),
                           error=f"no member run completed{': ' + errors if errors else ''}")
    return book.update(exp.id, status="completed", finished=utc_now(),
                       notes={**exp.notes, "best_run": best["run_id"]})


def _cancel_members(store: Any, exp: Experiment, runner: Any, owner: str | None = None) -> list[str]:
    cancelled = []
    for row in member_rows(store, exp):
        if row.get("status") in ACTIVE:
            try:
                runner.cancel(row["run_id"], owner)
                cancelled.append(row["run_id"])
            except StudioError:
                pass  # deleted or finished meanwhile
    return cancelled


def _wait_until_stopped(store: Any, exp: Experiment, runner: Any, poll_s: float) -> None:
    """Poll the runner (which terminates, then kills, a worker ignoring its cancel) until no
    member is queued or running, or the runner's grace periods and a margin have passed."""
    limit = time.monotonic() + getattr(runner, "cancel_grace", 10.0) + getattr(runner, "kill_grace", 5.0) + 10.0
    while time.monotonic() < limit:
        runner.poll()
        if not any(r.get("status") in ACTIVE for r in member_rows(store, exp)):
            return
        time.sleep(max(0.05, min(poll_s, 0.5)))


def snapshot(store: Any, exp: Experiment, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Where an experiment stands: counts by status, planned total, elapsed seconds, best so far.

    Returns:
        ``{"id", "status", "planned" (None for auto), "counts": {status: n}, "done", "elapsed_s",
        "minutes" (auto's budget or None), "best": leaderboard row or None}``.
    """
    rows = rows if rows is not None else member_rows(store, exp)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status") or "unknown"] = counts.get(r.get("status") or "unknown", 0) + 1
    started = parse_time(exp.started)
    end = parse_time(exp.finished) or time.time()
    board = leaderboard(store, exp)
    return {"id": exp.id, "status": exp.status, "planned": len(exp.planned_runs) or None, "counts": counts,
            "done": sum(n for s, n in counts.items() if s not in ACTIVE),
            "elapsed_s": (end - started) if started else 0.0, "minutes": exp.plan.get("minutes"),
            "best": board[0] if board and board[0]["rank"] else None}


# ---------------------------------------------------------------------------- lifecycle
def create_experiment(store: Any, exp: Experiment) -> Experiment:
    """Store a planned experiment (checking the demo's budget per visitor first)."""
    from core.experiments.estimate import check_visitor_budget

    check_visitor_budget(store, exp)
    return ExperimentBook(store).create(exp)


def launch_experiment(store: Any, exp_id: str, env: Mapping[str, str] | None = None) -> Experiment:
    """Start the experiment's driver as a detached process (the pages use this).

    Its output goes to ``experiments/<id>/driver.log``; it uses the executor named by
    ``$STUDIO_EXECUTOR`` (or ``env``).

    Returns:
        The experiment, ``running``, with the driver's pid.
    """
    book = ExperimentBook(store)
    exp = book.get(exp_id)
    if exp.status == "running" and driver_alive(exp):
        raise StudioError(f"experiment {exp_id} is running already")
    environ = {**os.environ, **dict(env or {}), "PYTHONUNBUFFERED": "1"}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), environ.get("PYTHONPATH", "")) if p)
    log_path = book.dir(exp_id) / "driver.log"
    with open(log_path, "ab") as log:
        log.write(f"--- {utc_now()} starting the driver of {exp_id}\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "core.experiments.driver", str(store.root), exp_id],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environ,
                                start_new_session=True, close_fds=True)
    return book.update(exp_id, status="running", started=exp.started or utc_now(), error=None,
                       driver={"pid": proc.pid, "pid_created": None, "host": socket.gethostname()})


def _this_process() -> dict[str, Any]:
    import psutil

    return {"pid": os.getpid(), "pid_created": psutil.Process().create_time(), "host": socket.gethostname()}


def driver_alive(exp: Experiment) -> bool:
    """Whether the process following ``exp`` is still there (on this host; True elsewhere)."""
    import psutil

    d = exp.driver or {}
    if d.get("host") not in (None, socket.gethostname()):
        return True
    pid = d.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = d.get("pid_created")
        return created is None or abs(proc.create_time() - float(created)) < 0.5
    except (psutil.Error, OSError, ValueError, OverflowError):
        return False


def experiment_status(store: Any, exp_id: str) -> Experiment:
    """The experiment, with a ``running`` one whose driver is gone marked ``interrupted``."""
    book = ExperimentBook(store)
    exp = book.get(exp_id)
    if exp.status == "running" and not driver_alive(exp):
        time.sleep(0.2)  # the driver may be between writes of its own pid
        exp = book.get(exp_id)
        if exp.status == "running" and not driver_alive(exp):
            exp = book.update(exp_id, status="interrupted", finished=utc_now(),
                              error="its driver process ended before the experiment did; launch it again to go on")
    return exp


def cancel_experiment(store: Any, exp_id: str, owner: str | None = None, runner: Any = None) -> list[str]:
    """Stop an experiment: no new runs, and its queued and running members cancelled.

    Args:
        owner: who asks; in the demo only the experiment's owner may (None: the command line).
        runner: a job runner to cancel through (None: one made here, no thread).

    Returns:
        The run ids a cancel was sent to.
    """
    from core.runs import JobRunner
    from core.runs.owners import check_owner

    book = ExperimentBook(store)
    exp = book.get(exp_id)
    check_owner({"owner": exp.owner}, owner, "cancel")
    if exp.status in FINAL_STATUSES and exp.status != "interrupted":
        return []
    exp = book.update(exp_id, cancel_requested=True)
    runner = runner or JobRunner(store, start_thread=False)
    cancelled = _cancel_members(store, exp, runner, owner)
    if not driver_alive(exp):  # nobody else will write the final status
        book.update(exp_id, status="cancelled", finished=utc_now())
    return cancelled


def delete_experiment(store: Any, exp_id: str, owner: str | None = None, delete_runs: bool = False) -> list[str]:
    """Cancel the experiment and remove its record; with ``delete_runs`` its runs too.

    Returns:
        The run ids deleted.

    Raises:
        StudioError: when ``delete_runs`` and members are still stopping (try again in a moment),
            or when the demo refuses it.
    """
    from core.runs.owners import check_owner

    book = ExperimentBook(store)
    exp = book.get(exp_id)
    check_owner({"owner": exp.owner}, owner, "delete")
    cancel_experiment(store, exp_id, owner)
    deleted = []
    if delete_runs:
        rows = member_rows(store, book.get(exp_id))
        busy = [r["run_id"] for r in rows if r.get("status") == "running"]
        if busy:
            raise StudioError(f"{len(busy)} run(s) of {exp_id} are still stopping; delete again in a few seconds")
        for r in rows:
            store.delete(r["run_id"], owner=owner)
            deleted.append(r["run_id"])
    book.remove(exp_id)
    return deleted


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core.experiments.driver RUNS_DIR EXP_ID``: follow one experiment to its end."""
    import logging

    from core.runs import RunStore

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m core.experiments.driver RUNS_DIR EXP_ID", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        exp = run_experiment(RunStore(argv[0]), argv[1])
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"experiment {exp.id} ended {exp.status}")
    return 0 if exp.status in ("completed", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
