"""Auto: Optuna's TPE sampler and successive-halving pruner over ordinary runs, in a time budget.

The driver (:mod:`core.experiments.driver`) calls this strategy each pass. The budget has two
parts. In the search (the first ``1 - FINAL_SHARE`` of it), each trial is a short run submitted
to the job runner; its per-epoch validation metric (metrics.jsonl) is reported to Optuna as it
arrives, and a trial the pruner stops is cancelled like any run. The first trial is the default
recipe. New trials start only while the search leaves room for one, each with a time limit that
ends it with the search. Then the **final runs** train the settings of the best trial so far
alone on the machine, for the rest of the budget: short trials rank settings, but a model
trained for minutes rather than seconds is what a person wants to use (measured in
BENCHMARKS.md: the default recipe given the whole machine beat every short trial). The best
trial replaces the default recipe's settings (trial 0's) only when it beats trial 0 on
validation by more than one standard error of that paired difference
(:func:`core.experiments.ensemble.paired_margin`): on a small or easy validation split a
search picks settings by noise. The rest of the budget is shared by :data:`MIN_FINALS` final
runs of those settings from other initial weights (the split kept), one after the other, and
one that ends at its epoch cap with its own duration still left is followed by another, up to
:data:`MAX_FINALS`; then, if averaging the best runs' probabilities does as well on validation,
that ensemble is added as a member (:mod:`core.experiments.auto_ensemble`). At the
deadline (plus a grace for the final evaluation) what still trains is cancelled. The best run,
a final one, a trial or the ensemble, is chosen on validation only
(:func:`core.experiments.summary.select_best`). The study lives in memory and is rebuilt from
the member runs, so nothing but the runs themselves needs to be kept.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from core.errors import StudioError
from core.experiments.record import Experiment, ExperimentBook, parse_time
from core.experiments.auto_study import study_from_runs
from core.experiments.space import config_for, distributions, size_space

logger = logging.getLogger(__name__)

#: Seconds after the deadline that trials still finishing (their last evaluation) get, at least.
GRACE_S = 20.0
#: Nothing trains longer than this past the deadline (the stated margin of the budget, less the
#: few seconds a cancelled worker takes to stop).
HARD_S = 30.0
_MIN_TRIAL_S = 8.0
#: A trial's cost beyond its training (worker start, data loading, final evaluation), assumed
#: until a finished trial shows the real figure on this machine.
OVERHEAD_S = 15.0
#: The share of the budget the final run trains in (the search has the rest).
FINAL_SHARE = 0.5
#: The final run's epoch cap (its time limit normally ends it first).
FINAL_MAX_EPOCHS = 300
#: At most this many final runs: when one ends at its epoch cap with time to spare, another
#: trains the same settings from other initial weights (the same split), for an ensemble.
MAX_FINALS = 4
#: The final share is split evenly between this many final runs (fewer in demo mode), so that
#: Auto can average runs trained from different initial weights (BENCHMARKS.md, Auto).
MIN_FINALS = 2


def final_limit(remaining_s: float, finals_done: int, min_finals: int, overhead_s: float) -> float:
    """The time limit of the next final run: an even share of ``remaining_s`` among the final runs
    still owed (each also costs ``overhead_s`` to start and evaluate), or all of it once
    ``min_finals`` have run."""
    owed = min_finals - finals_done
    if owed <= 1:
        return remaining_s
    return max(0.0, (remaining_s - overhead_s * (owed - 1)) / owed)


def max_runs(max_trials: int | None, demo_cap: int | None) -> int | None:
    """The most member runs an Auto plan makes: its trials, the final runs and the ensemble
    (one final and the ensemble only within the demo's cap); None when only time bounds it."""
    if demo_cap is not None:
        return min(max_trials + 2, demo_cap) if max_trials else demo_cap
    return max_trials + MAX_FINALS + 1 if max_trials else None


class AutoSearch:
    """The driver's strategy for ``kind == "auto"`` (see the module docstring)."""

    def __init__(self, store: Any, book: ExperimentBook, exp: Experiment, runner: Any, rows: list[dict[str, Any]]):
        import optuna

        self.store, self.book, self.exp_id = store, book, exp.id
        plan = dict(exp.plan)
        if not plan.get("space"):
            search_minutes = float(plan["minutes"]) * (1 - FINAL_SHARE)
            plan["space"] = size_space(exp.dataset, search_minutes, slots=runner.max_concurrent,
                                       data_dir=plan.get("data_dir"), image_sizes=plan.get("image_sizes"))
            exp = book.update(exp.id, plan=plan)
            logger.info("Auto on %s: %d architecture/size choices: %s", exp.dataset, len(plan["space"]["arches"]),
                        ", ".join(a["arch"] for a in plan["space"]["arches"]))
        self.plan, self.space = plan, plan["space"]
        self.metric = exp.metric
        self.dists = distributions(self.space)
        started = parse_time(exp.started) or time.time()
        self.deadline = started + float(plan["minutes"]) * 60
        self.search_deadline = started + float(plan["minutes"]) * 60 * (1 - FINAL_SHARE)
        # The final runs submitted (never pruned), and whether no more will be asked for.
        self.final_ids: list[str] = [r["run_id"] for r in rows if _is_final(r)]
        self.finals_over = False
        from core.experiments.summary import leaderboard

        self.study = study_from_runs(exp, leaderboard(store, exp, live=False))
        self.live: dict[str, tuple[Any, int]] = {}  # run id -> (trial, last epoch reported)
        self.pruned: set[str] = set()
        self.completed = sum(1 for r in rows if r.get("status") == "completed")
        self.backlog: list[tuple[Any, tuple[dict, str]]] = []
        self.asked = len(rows)
        self.closed = False
        if not rows:
            self.study.enqueue_trial(self.space["default"])
        cheapest = min((a["epoch_seconds"] or 0.0) for a in self.space["arches"])
        self.min_train_s = max(_MIN_TRIAL_S, 2 * cheapest + 5.0)
        self.overhead_s = OVERHEAD_S
        self.optuna = optuna

    # -- the driver's calls ----------------------------------------------------------------
    def next_jobs(self, exp: Experiment, free: int, rows: list[dict[str, Any]]) -> list[tuple[dict, str]]:
        from core.experiments.members import member_params

        remaining = self.search_deadline - time.time()
        # The first trial (the default recipe) starts while any of the search's time is left: on
        # a slow machine it may be the one comparison there will be.
        room = remaining > 0 if self.asked == 0 else remaining >= self.min_train_s + self.overhead_s
        if self.closed or not room:
            self.closed = True  # the search is over: the final run, alone, once the trials have ended
            return self._final_job(exp, rows) if not self.live and not self.backlog else []
        max_trials = self._max_trials()
        if max_trials is not None and self.asked >= max_trials:
            self.closed = True
        while not self.closed and len(self.backlog) < free:
            trial = self.study.ask(self.dists)
            self.asked += 1
            cfg = config_for(self.space, trial.params, exp.dataset, seed=int(self.plan.get("seed", 0)),
                             remaining_s=remaining - self.overhead_s, data_dir=self.plan.get("data_dir"))
            label = f"trial {trial.number}: {_settings_text(trial.params)}"
            entry = {"label": label, "settings": dict(trial.params), "config": cfg.to_dict()}
            params = member_params(exp, entry, trial=trial.number)
            params["experiment_trial"] = {"number": trial.number, "params": dict(trial.params)}
            self.backlog.append((trial, (params, f"{exp.name} · trial {trial.number}"[:200])))
            if max_trials is not None and self.asked >= max_trials:
                self.closed = True
                break
        return [job for _, job in self.backlog[:free]]

    def _max_trials(self) -> int | None:
        """The plan's cap on search trials, within the demo's runs per experiment (one of which
        is kept for the final run)."""
        from core.limits import current_limits

        caps = [self.plan.get("max_trials")]
        demo = current_limits().max_experiment_runs
        if demo is not None:
            caps.append(max(1, demo - 1))
        caps = [c for c in caps if c is not None]
        return min(caps) if caps else None

    def _final_job(self, exp: Experiment, rows: list[dict[str, Any]]) -> list[tuple[dict, str]]:
        """The next final run, or [] when the finals are over.

        The first trains the settings :meth:`_finals_settings` chooses for an even share of the
        rest of the budget among :data:`MIN_FINALS` finals (:func:`final_limit`); the next ones
        train the same settings from other initial weights (seed + 1, ..., the split kept). Past
        :data:`MIN_FINALS`, another follows only when the last ended with at least its own
        duration left, up to :data:`MAX_FINALS`; :meth:`before_finish` may then average them.
        """
        from core.experiments.members import member_params
        from core.limits import current_limits

        finals = [r for r in rows if _is_final(r)]
        if self.finals_over or self.backlog or any(r.get("status") in ("queued", "running") for r in finals):
            return []
        remaining = self.deadline - time.time() - self.overhead_s
        needed = self.min_train_s
        min_finals = min(MIN_FINALS, self._max_finals())
        if finals:
            if len(finals) >= self._max_finals() or any(r.get("status") != "completed" for r in finals):
                self.finals_over = True
                return []
            if len(finals) >= min_finals:
                needed = max(needed, self._wall_seconds(finals[-1]))
        limit = final_limit(remaining, len(finals), min_finals, self.overhead_s)
        if limit < needed:
            self.finals_over = True
            return []
        if finals:
            first = finals[0]["trial"]
            values, from_trial, kept = dict(first["params"]), first.get("from_trial"), first.get("default_kept")
        else:
            values, from_trial, kept = self._finals_settings(rows)
        seed = int(self.plan.get("seed", 0))
        cap = min(FINAL_MAX_EPOCHS, current_limits().max_epochs or FINAL_MAX_EPOCHS)
        cfg = config_for(self.space, values, exp.dataset, seed=seed + len(finals), remaining_s=remaining,
                         data_dir=self.plan.get("data_dir"), epochs=cap, limit_s=limit).replace(split_seed=seed)
        source = f"trial {from_trial}'s settings" if from_trial is not None else "the default recipe (no trial completed)"
        if kept:
            source += (f" (the default recipe: trial {kept['over']} beat it on validation by {kept['margin']:.5f}, "
                       f"within one standard error, {kept['tolerance']:.5f})")
        which = f"final {len(finals) + 1}"
        weights = f", initial weights of seed {seed + len(finals)}" if finals else ""
        share = "for the rest of the budget" if limit >= remaining else f"for {limit / 60:.1f} of the {remaining / 60:.1f} minutes left"
        number = self.asked
        self.asked += 1
        label = f"{which}: {source}{weights}, {share}: {_settings_text(values)}"
        entry = {"label": label, "settings": values, "config": cfg.to_dict()}
        params = member_params(exp, entry, trial=number)
        params["experiment_trial"] = {"number": number, "params": values, "final": True, "from_trial": from_trial}
        if kept:
            params["experiment_trial"]["default_kept"] = kept
        # No Optuna trial goes with it (None): the pruner must not stop a final run.
        self.backlog.append((None, (params, f"{exp.name} · {which}"[:200])))
        return [self.backlog[0][1]]

    def _finals_settings(self, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], int | None, dict[str, Any] | None]:
        """What the final runs train: ``(settings, the trial they come from, why the default was
        kept or None)``.

        The best search trial on validation (the choice that picks Auto's best run), unless the
        default recipe, trial 0, is within one standard error of it on validation: then trial 0's.
        """
        from core.experiments.summary import select_best

        trials = [r for r in rows if isinstance(r.get("trial"), dict) and not _is_final(r)]
        best = select_best(trials, self.metric)
        if best is None:
            return dict(self.space["default"]), None, None
        default = next((r for r in trials if r["trial"].get("number") == 0 and r.get("status") == "completed"), None)
        if default is None or default["run_id"] == best["run_id"]:
            return dict(best["trial"]["params"]), best["trial"]["number"], None
        margin, tolerance = self._margin(best["run_id"], default["run_id"])
        if margin is None or margin > tolerance:
            return dict(best["trial"]["params"]), best["trial"]["number"], None
        logger.info("Auto: trial %s beat the default on validation by %.5f, within its standard error %.5f; "
                    "the final runs train the default recipe", best["trial"]["number"], margin, tolerance)
        kept = {"over": best["trial"]["number"], "margin": round(margin, 6), "tolerance": round(tolerance, 6)}
        return dict(default["trial"]["params"]), 0, kept

    def _margin(self, better_id: str, other_id: str) -> tuple[float | None, float]:
        """:func:`core.experiments.ensemble.paired_margin` of two runs' saved validation
        probabilities; ``(None, 0.0)`` when either is missing or they are of other splits."""
        from core.experiments.ensemble import paired_margin

        try:
            a, b = self.store.get(better_id).predictions(), self.store.get(other_id).predictions()
            task = self.store.get(better_id).meta().get("task") or "multi-class"
        except (StudioError, OSError, ValueError):
            return None, 0.0
        if a is None or b is None or "val_scores" not in a or "val_scores" not in b:
            return None, 0.0
        if a["val_labels"].shape != b["val_labels"].shape or not (a["val_labels"] == b["val_labels"]).all():
            return None, 0.0
        return paired_margin(a["val_scores"], b["val_scores"], a["val_labels"], task, self.metric)

    def _max_finals(self) -> int:
        from core.limits import current_limits

        return 1 if current_limits().max_experiment_runs is not None else MAX_FINALS

    def _wall_seconds(self, row: dict[str, Any]) -> float:
        """How long a finished run took from launch to its end (training, evaluation, start-up)."""
        try:
            meta = self.store.get(row["run_id"]).meta()
        except StudioError:
            return float("inf")
        start, end = parse_time(meta.get("launched") or meta.get("started")), parse_time(meta.get("finished"))
        if start and end:
            return end - start
        return float(meta.get("train_seconds") or 0.0) + self.overhead_s

    def before_finish(self, exp: Experiment, rows: list[dict[str, Any]]) -> list[str]:
        """The ensemble of the best runs when averaging them does better on validation; the ids
        of the runs it added (see :func:`core.experiments.auto_ensemble.add_ensemble`)."""
        from core.experiments.auto_ensemble import add_ensemble

        if time.time() > self.deadline + GRACE_S:
            return []
        return add_ensemble(self.store, exp, rows, self.metric)

    def submitted(self, ids: list[str]) -> None:
        for run_id in ids:
            trial, _ = self.backlog.pop(0)
            if trial is None:  # a final run: followed by the driver, not by Optuna
                self.final_ids.append(run_id)
                continue
            self.live[run_id] = (trial, 0)

    def observe(self, rows: list[dict[str, Any]], runner: Any) -> None:
        now = time.time()
        for row in rows:
            run_id = row["run_id"]
            if run_id in self.final_ids and row.get("status") == "running" and run_id not in self.pruned:
                if self._past_deadline(now, 1):
                    self._cancel(runner, run_id)
                continue
            if run_id not in self.live:
                continue
            trial, last = self.live[run_id]
            status = row.get("status")
            if status == "running" and run_id not in self.pruned:
                last = self._report(run_id, trial, last)
                self.live[run_id] = (trial, last)
                if trial.should_prune():
                    logger.info("pruning trial %d (run %s) after epoch %d", trial.number, run_id, last)
                    self._cancel(runner, run_id)
                elif self._past_deadline(now, last, None if self.final_ids else self.search_deadline):
                    self._cancel(runner, run_id)
            elif status == "completed":
                self._report(run_id, trial, last)
                self._learn_overhead(row)
                value = row.get(self.metric)
                value = value if value is not None else row.get("val_acc")
                if value is None or not math.isfinite(value):
                    self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                else:
                    self.study.tell(trial, float(value))
                    self.completed += 1
                del self.live[run_id]
            elif status in ("cancelled", "failed", "interrupted"):
                state = "PRUNED" if status == "cancelled" else "FAIL"
                self.study.tell(trial, state=getattr(self.optuna.trial.TrialState, state))
                del self.live[run_id]

    def done(self, rows: list[dict[str, Any]]) -> bool:
        if self.asked and time.time() > self.search_deadline - self.min_train_s - self.overhead_s:
            self.closed = True
        if self.closed and not self.finals_over and time.time() > self.deadline - self.min_train_s - self.overhead_s:
            self.finals_over = True  # no time is left for another final run
        return self.closed and self.finals_over and not self.backlog

    # -- helpers ---------------------------------------------------------------------------
    def _report(self, run_id: str, trial: Any, last: int) -> int:
        try:
            records = self.store.get(run_id).metrics(kind="epoch")
        except StudioError:
            return last
        for record in records:
            epoch, value = record.get("epoch"), record.get(self.metric)
            if isinstance(epoch, int) and epoch > last and isinstance(value, (int, float)) and math.isfinite(value):
                trial.report(float(value), epoch)
                last = epoch
        return last

    def _past_deadline(self, now: float, epochs_reported: int, deadline: float | None = None) -> bool:
        """Whether a run still training must be cancelled for the budget (or, for a search trial,
        for the final run's share of it). The budget is kept: nothing trains more than ``HARD_S``
        past the deadline. Within that, a trial that has not trained an epoch gets the grace, one
        finishing within its own time limit (an epoch done, its evaluation to come) or the only
        hope of a result (nothing completed yet) twice it."""
        grace = max(GRACE_S, self.overhead_s)
        if epochs_reported or not self.completed:
            grace *= 2
        return now > (self.deadline if deadline is None else deadline) + min(grace, HARD_S)

    def _learn_overhead(self, row: dict[str, Any]) -> None:
        try:
            meta = self.store.get(row["run_id"]).meta()
        except StudioError:
            return
        start, end = parse_time(meta.get("launched")), parse_time(meta.get("finished"))
        if start and end and isinstance(meta.get("train_seconds"), (int, float)):
            self.overhead_s = max(self.overhead_s if self.overhead_s != OVERHEAD_S else 0.0,
                                  end - start - float(meta["train_seconds"]), 5.0)

    def _cancel(self, runner: Any, run_id: str) -> None:
        self.pruned.add(run_id)
        try:
            runner.cancel(run_id)
        except StudioError:
            pass


def _is_final(row: dict[str, Any]) -> bool:
    trial = row.get("trial")
    return isinstance(trial, dict) and bool(trial.get("final"))


def _settings_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_show(v)}" for k, v in values.items())


def _show(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
