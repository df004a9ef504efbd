"""An experiment's member runs: the marks their params.json carries, and reading them back.

Every member is an ordinary run whose ``params.json`` adds ``experiment`` (the id, also an
index column), ``experiment_kind``, ``experiment_label`` (its settings in words),
``experiment_settings`` (what the plan varied), ``experiment_item`` (its place in the plan),
``experiment_variant`` (an ablation's arm) and ``experiment_trial`` (Auto's trial number and
values).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from core.errors import StudioError
from core.experiments.record import Experiment


def member_params(exp: Experiment, entry: Mapping[str, Any], item: int | None = None,
                  trial: int | None = None) -> dict[str, Any]:
    """params.json of a member run: the training params plus the experiment's marks."""
    from core.train import TrainConfig, build_params

    cfg = dict(entry["config"])
    cfg["milestones"] = tuple(cfg.get("milestones") or (0.5, 0.75))
    params = build_params(TrainConfig.from_dict(cfg))
    params.update({"experiment": exp.id, "experiment_kind": exp.kind, "experiment_label": entry.get("label"),
                   "experiment_settings": entry.get("settings") or {}, "experiment_item": item,
                   "experiment_variant": entry.get("variant"), "experiment_trial": trial})
    return params


def member_rows(store: Any, exp: Experiment) -> list[dict[str, Any]]:
    """Index rows of the experiment's runs (the members list, and any run whose params name it)."""
    members = set(exp.members)
    rows = [r for r in store.list_runs(order_by="created", descending=False)
            if r["run_id"] in members or r.get("experiment") == exp.id]
    for row in rows:
        try:
            params = store.get(row["run_id"]).params()
        except StudioError:
            params = {}
        row["label"] = params.get("experiment_label") or row.get("name")
        row["settings"] = params.get("experiment_settings") or {}
        row["variant"] = params.get("experiment_variant")
        row["trial"] = params.get("experiment_trial")
    return rows


def best_so_far(store: Any, run_id: str, metric: str) -> float | None:
    """The best per-epoch validation value a run has logged (metrics.jsonl), or None."""
    try:
        records = store.get(run_id).metrics(kind="epoch")
    except StudioError:
        return None
    values = [r.get(metric) for r in records if isinstance(r.get(metric), (int, float))]
    values = [float(v) for v in values if math.isfinite(v)]
    return max(values) if values else None
