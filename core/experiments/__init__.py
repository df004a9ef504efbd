"""Experiments: groups of ordinary runs planned, launched, followed and compared as one thing.

Kinds: ``sweep`` (a grid or random draws over any TrainConfig field and over models, x seeds),
``seeds`` (one run's settings x N seeds -> mean, std, 95 % interval), ``ablation`` (a seed
paper's study, each variant x the same seeds, beside the paper's claims) and ``auto`` (the
best model in a wall-clock budget, Optuna TPE + successive halving, chosen on validation).

>>> store = RunStore()
>>> exp = plan_sweep("breastmnist", parse_grid(["model=medvcnn,resnet18", "lr=1e-3,3e-3"]), fixed={"epochs": 5})
>>> estimate_experiment(store, exp)                   # {"runs": 4, "seconds": ..., "source": ...}
>>> create_experiment(store, exp)                     # experiments/<id>/experiment.json + index row
>>> launch_experiment(store, exp.id)                  # detached driver (pages); run_experiment: foreground (CLI)
>>> leaderboard(store, experiment_status(store, exp.id))
>>> cancel_experiment(store, exp.id, owner=session)   # queued and running members cancelled
"""

from core.experiments.ablations import STUDIES, Study, Variant, study_for
from core.experiments.auto_study import parameter_importances
from core.experiments.driver import (
    cancel_experiment,
    create_experiment,
    delete_experiment,
    driver_alive,
    experiment_status,
    launch_experiment,
    run_experiment,
    snapshot,
)
from core.experiments.estimate import check_visitor_budget, epoch_seconds, estimate_experiment
from core.experiments.plan import (
    METRICS,
    grid_size,
    parse_grid,
    plan_ablation,
    plan_auto,
    plan_seeds,
    plan_sweep,
    sweepable_fields,
)
from core.experiments.record import KINDS, STATUSES, Experiment, ExperimentBook, validate_experiment_id
from core.experiments.summary import (
    ablation_table,
    best_curve,
    best_so_far,
    leaderboard,
    member_rows,
    seeds_summary,
    select_best,
    t_interval,
)


def list_experiments(store, kind: str | None = None, status: str | None = None) -> list[dict]:
    """Index rows of the stored experiments, newest first (see :meth:`ExperimentBook.list`)."""
    return ExperimentBook(store).list(kind=kind, status=status)


def get_experiment(store, exp_id: str) -> Experiment:
    """One stored experiment, with a dead driver's ``running`` shown as ``interrupted``."""
    return experiment_status(store, exp_id)


__all__ = [
    "KINDS", "METRICS", "STATUSES", "STUDIES", "Experiment", "ExperimentBook", "Study", "Variant",
    "ablation_table", "best_curve", "best_so_far", "cancel_experiment", "check_visitor_budget", "create_experiment",
    "delete_experiment", "driver_alive", "epoch_seconds", "estimate_experiment", "experiment_status",
    "get_experiment", "grid_size", "launch_experiment", "leaderboard", "list_experiments", "member_rows",
    "parameter_importances", "parse_grid", "plan_ablation", "plan_auto", "plan_seeds", "plan_sweep",
    "run_experiment", "seeds_summary", "select_best", "snapshot", "study_for", "sweepable_fields",
    "t_interval", "validate_experiment_id",
]
