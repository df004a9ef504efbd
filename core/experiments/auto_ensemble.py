"""Auto's last step: average its best runs when that does as well on validation.

The completed members (trials and final runs) of the best run's image size, ranked by the
validation metric as :func:`core.experiments.summary.select_best` ranks them, are averaged in
prefixes (the best 2, the best 3, ...) using the validation probabilities each run saved;
:func:`core.experiments.ensemble.ensemble_within_noise` keeps the longest prefix whose
validation deficit is within one standard error of the paired difference on both metrics,
against the best prefix on each (the steadier choice on a small validation split, and not one
that loses accuracy where the AUC is saturated), or else the prefix with the best score. If that is more than one run, the
ensemble becomes a member run of the experiment
(:func:`core.experiments.ensemble.create_ensemble_run`); its ``experiment_trial.tolerance``
records that standard error, and :func:`core.experiments.summary.select_best` keeps it over a
single run that beats it on validation by no more than that. Nothing reads a test score.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.errors import StudioError
from core.experiments.record import Experiment

logger = logging.getLogger(__name__)

_OTHER = {"val_auc": "val_acc", "val_acc": "val_auc"}


def ranked_candidates(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Completed single runs with a validation score, best first (ties: the other metric, then
    the earlier run), of the best one's image size."""
    other = _OTHER[metric]
    done = [r for r in rows if r.get("status") == "completed" and r.get("model") != "ensemble"
            and (r.get(metric) is not None or r.get(other) is not None)]
    done.sort(key=lambda r: (-(r.get(metric) if r.get(metric) is not None else -1.0),
                             -(r.get(other) if r.get(other) is not None else -1.0), r.get("created") or "", r["run_id"]))
    if not done:
        return []
    size = done[0].get("image_size")
    return [r for r in done if r.get("image_size") == size]


def add_ensemble(store: Any, exp: Experiment, rows: list[dict[str, Any]], metric: str) -> list[str]:
    """Create the ensemble member when averaging helps on validation.

    Returns:
        ``[run id]`` of the ensemble added, or ``[]`` (fewer than two candidates, no prefix
        better than the best run alone, or an ensemble that could not be built: logged, and
        Auto ends with its best single run).
    """
    from core.experiments.ensemble import MAX_MEMBERS, create_ensemble_run, ensemble_within_noise
    from core.limits import current_limits

    if any(r.get("model") == "ensemble" for r in rows):
        return []  # added already (a resumed driver)
    cap = current_limits().max_experiment_runs
    if cap is not None and len(rows) >= cap:
        return []
    scores, labels, ids = [], None, []
    for row in ranked_candidates(rows, metric)[:MAX_MEMBERS]:
        try:
            preds = store.get(row["run_id"]).predictions()
        except StudioError:
            continue
        if preds is None or "val_scores" not in preds:
            continue
        if labels is None:
            labels = preds["val_labels"]
        elif preds["val_labels"].shape != labels.shape or not np.array_equal(preds["val_labels"], labels):
            continue  # another split: not comparable
        scores.append(preds["val_scores"])
        ids.append(row["run_id"])
    if len(ids) < 2:
        return []
    task = store.get(ids[0]).meta().get("task") or "multi-class"
    k, score, tolerance = ensemble_within_noise(scores, labels, task, metric)
    if k < 2:
        logger.info("Auto on %s: no average of its best runs does as well as the best run on validation", exp.dataset)
        return []
    numbers = {r["run_id"]: (r.get("trial") or {}).get("number") for r in rows}
    members = [numbers.get(i) for i in ids[:k]]
    which = (f"trials {', '.join(str(n) for n in members)}" if all(isinstance(n, int) for n in members)
             else f"runs {', '.join(ids[:k])}")
    why = f", within one standard error ({tolerance:.3f}) of the best on validation" if tolerance else ""
    marks = {"experiment": exp.id, "experiment_kind": exp.kind,
             "experiment_label": f"ensemble: the average of the {k} best runs on validation ({which}){why}",
             "experiment_settings": {}, "experiment_item": None, "experiment_variant": None,
             "experiment_trial": {"number": len(rows), "params": {}, "ensemble": True, "members": members,
                                    "tolerance": round(tolerance, 6)}}
    try:
        run = create_ensemble_run(store, ids[:k], name=f"{exp.name} · ensemble of {k}"[:200], owner=exp.owner,
                                  marks=marks, data_dir=exp.plan.get("data_dir"))
    except (StudioError, OSError, RuntimeError, ValueError) as exc:
        logger.warning("Auto on %s: the ensemble of its %d best runs could not be built (%s)", exp.dataset, k, exc)
        return []
    logger.info("Auto on %s: ensemble of %d runs, val %s %.4f (tolerance %.4f)", exp.dataset, k, metric,
                score or float("nan"), tolerance)
    return [run.id]
