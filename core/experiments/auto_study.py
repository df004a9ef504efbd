"""The Optuna study of an Auto experiment, rebuilt from its member runs.

Nothing but the runs is kept: the driver makes the study anew when it starts or resumes an
Auto experiment (then keeps it in memory, telling it each trial's end), and each look at
Optuna's parameter importances on the Experiments page or ``python -m core experiment ID``
makes it from the trials' ``params.json`` (their settings) and leaderboard rows (their scores).
"""

from __future__ import annotations

from typing import Any

from core.experiments.record import Experiment
from core.experiments.space import distributions


def study_from_runs(exp: Experiment, rows: list[dict[str, Any]]):
    """An Optuna study holding every finished trial of ``exp`` (for importances and resuming)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = exp.plan.get("space")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=exp.plan.get("seed", 0)),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    if not space:
        return study
    dists = distributions(space)
    for row in rows:
        trial = row.get("trial") or {}
        values = trial.get("params") if isinstance(trial, dict) else None
        if not isinstance(values, dict) or set(values) != set(dists):
            continue
        if row.get("status") == "completed" and row.get("score") is not None:
            state, value = optuna.trial.TrialState.COMPLETE, float(row["score"])
        elif row.get("status") == "cancelled":
            state, value = optuna.trial.TrialState.PRUNED, None
        elif row.get("status") in ("failed", "interrupted"):
            state, value = optuna.trial.TrialState.FAIL, None
        else:
            continue
        try:
            study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=value, state=state))
        except ValueError:  # a value outside the space (a hand-edited params.json): left out
            continue
    return study


def parameter_importances(store: Any, exp: Experiment) -> dict[str, float]:
    """Which settings mattered (Optuna's fANOVA importances over completed trials); ``{}`` with
    fewer than two completed trials or when they do not differ."""
    import optuna

    from core.experiments.summary import leaderboard

    study = study_from_runs(exp, leaderboard(store, exp, live=False))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2 or len({t.value for t in done}) < 2:
        return {}
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):  # a single distinct value of every setting
        return {}
