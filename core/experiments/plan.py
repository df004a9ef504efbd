"""Planning experiments: the list of run settings of a sweep, seeds or ablation, and Auto's frame.

A plan is made and checked completely before anything is queued: every run's settings go
through :func:`core.train.validate` (and the demo's caps), so a bad value fails with one
sentence before the first run starts.

>>> grid = parse_grid(["model=medvcnn,resnet18", "lr=1e-3,3e-3", "epochs=5"])
>>> exp = plan_sweep("breastmnist", grid, seeds=2)          # 2 x 2 x 1 x 2 seeds = 8 runs
>>> len(exp.planned_runs)
8
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any, Iterable, Mapping, Sequence

from core.errors import ConfigError, StudioError
from core.experiments.ablations import study_for
from core.experiments.record import Experiment, new_experiment_id

#: TrainConfig fields a sweep may not vary (they name the data or are notes, not settings).
_NOT_SWEPT = {"dataset", "extra", "data_dir"}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
METRICS = ("val_auc", "val_acc")


def sweepable_fields() -> dict[str, type]:
    """Field name -> value type of everything a sweep can vary (``model``, ``recipe`` and
    every :class:`core.train.TrainConfig` setting)."""
    from core.train import TrainConfig

    out: dict[str, type] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_SWEPT:
            continue
        default = f.default if f.default is not dataclasses.MISSING else ""
        out[f.name] = type(default)
    return out


def parse_value(name: str, text: str, kind: type) -> Any:
    """``text`` as a value of the field's type (``"1e-3"`` -> 0.001, ``"yes"`` -> True).

    Raises:
        StudioError: when it is not a value of that type.
    """
    t = text.strip()
    try:
        if kind is bool:
            if t.lower() in _TRUE | _FALSE:
                return t.lower() in _TRUE
            raise ValueError
        if kind is int:
            value = float(t)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(t)
        if kind is tuple:  # milestones: fractions joined by '/' ("0.5/0.75")
            return tuple(float(p) for p in t.split("/") if p)
    except ValueError:
        what = {bool: "true or false", int: "a whole number", float: "a number",
                tuple: "fractions joined by '/', such as 0.5/0.75"}[kind]
        raise StudioError(f"{name}={text!r}: {name} takes {what}") from None
    if not t:
        raise StudioError(f"{name} has an empty value; write {name}=V1,V2")
    return t


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["model=medvcnn,resnet18", "lr=1e-3,3e-3"]`` -> ``{"model": [...], "lr": [0.001, 0.003]}``.

    Raises:
        StudioError: for an item without ``=``, an unknown field (the valid ones are named),
            a repeated field, or a value of the wrong type.
    """
    valid = sweepable_fields()
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = str(item).partition("=")
        name = name.strip().replace("-", "_")
        if name == "size":
            name = "image_size"
        if not sep or not name:
            raise StudioError(f"'{item}' is not FIELD=V1,V2; write for example lr=1e-3,3e-3")
        if name not in valid:
            raise StudioError(f"'{name}' is not a training setting; sweep any of: {', '.join(sorted(valid))}")
        if name in grid:
            raise StudioError(f"{name} is given twice; list all its values once, as {name}=V1,V2")
        parsed = [parse_value(name, v, valid[name]) for v in values.split(",")]
        grid[name] = list(dict.fromkeys(parsed))  # repeated values would train the same run twice
    return grid


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    """How many settings the full grid has."""
    n = 1
    for values in grid.values():
        n *= max(1, len(values))
    return n


def _run_entry(dataset: str, settings: Mapping[str, Any], base: Mapping[str, Any], label: str | None = None,
               data_dir: str | None = None) -> dict[str, Any]:
    """One planned run: its varied settings, a label and the full validated TrainConfig dict."""
    from core.runs.submit import run_request

    values = {**base, **settings}
    model = values.pop("model", None)
    if not model:
        raise StudioError("a sweep needs a model: give --model M or model=M1,M2 in the grid")
    from core.models import list_models

    if model not in list_models():
        raise StudioError(f"unknown model '{model}'; choose one of: {', '.join(list_models())}")
    recipe = values.pop("recipe", "default")
    cfg = run_request(dataset, model, recipe, data_dir=data_dir, **values).config  # checked as any run is
    label = label or " ".join(f"{k}={_show(v)}" for k, v in settings.items())
    return {"label": label, "settings": dict(settings), "config": cfg.to_dict()}


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "/".join(f"{x:g}" for x in v)
    return str(v)


def _seed_list(seeds: int | Sequence[int] | None) -> list[int] | None:
    if seeds is None:
        return None
    out = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not out or len(out) > 100 or any(s < 0 for s in out):
        raise StudioError("give between 1 and 100 seeds (whole numbers of 0 or more)")
    return out


def plan_sweep(dataset: str, grid: Mapping[str, Sequence[Any]], *, model: str | None = None,
               recipe: str = "default", seeds: int | Sequence[int] | None = None, random_draws: int | None = None,
               draw_seed: int = 0, fixed: Mapping[str, Any] | None = None, name: str | None = None,
               owner: str | None = None, metric: str = "val_auc", data_dir: str | None = None) -> Experiment:
    """A sweep: every grid point (or ``random_draws`` of them), optionally x seeds.

    Args:
        dataset: a MedMNIST name or a folder / zip path.
        grid: field -> values (:func:`parse_grid`); may include ``model`` and ``recipe``.
        model: the model when the grid does not vary it.
        recipe: the recipe each run starts from (``default``, ``paper``, ...).
        seeds: a number N (seeds 0..N-1) or a list of seeds; each grid point runs once per seed.
        random_draws: draw this many distinct grid points at random instead of all of them.
        draw_seed: seed of those draws.
        fixed: settings every run gets (``epochs``, ``image_size``...), overridden by the grid.
        name, owner: display name and who asks.
        metric: the validation metric the leaderboard ranks by.
        data_dir: where MedMNIST files are.

    Returns:
        The planned (not yet stored) :class:`Experiment`.

    Raises:
        StudioError: an empty grid, a bad value, a demo cap.
    """
    _check_metric(metric)
    if not grid:
        raise StudioError("the grid is empty; give at least one FIELD=V1,V2 such as lr=1e-3,3e-3")
    keys = list(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    if random_draws is not None:
        if random_draws < 1:
            raise StudioError("--random needs at least 1 draw")
        points = random.Random(draw_seed).sample(points, min(random_draws, len(points)))
    seed_list = _seed_list(seeds)
    if seed_list is not None and "seed" in grid:
        raise StudioError("seed is both in the grid and given as --seeds; use one of them")
    if seed_list is not None:
        points = [{**p, "seed": s} for p in points for s in seed_list]
    base = dict(fixed or {})
    if model:
        base.setdefault("model", model)
    base.setdefault("recipe", recipe)
    _check_run_cap(len(points))
    runs = [_run_entry(dataset, p, base, data_dir=data_dir) for p in points]
    return _experiment("sweep", dataset, {"runs": runs, "grid": {k: list(v) for k, v in grid.items()},
                                          "random": random_draws}, name, owner, metric)


def plan_seeds(store: Any, run_id: str, n: int = 3, *, name: str | None = None, owner: str | None = None,
               metric: str = "val_auc") -> Experiment:
    """One run's settings trained again with ``n`` other seeds (its own seed is left out: that
    run exists already, and the same seed would repeat it on a CPU).

    Raises:
        StudioError: an unknown run, or one without training settings.
    """
    from core.train import TrainConfig

    _check_metric(metric)
    source = store.get(run_id)
    ensemble = source.params().get("ensemble")
    if isinstance(ensemble, dict):
        raise StudioError(f"run '{run_id}' is an ensemble of {len(ensemble.get('members') or [])} runs with no training "
                          "of its own to repeat; repeat one of its members instead")
    config = source.params().get("config")
    if not isinstance(config, dict):
        raise StudioError(f"run '{run_id}' has no training settings to repeat; pick a run trained by the studio")
    cfg = TrainConfig.from_dict(config)
    if not 1 <= n <= 100:
        raise StudioError("--n must be between 1 and 100 seeds")
    seeds = [s for s in range(n + 1) if s != cfg.seed][:n]
    _check_run_cap(len(seeds))
    base = {k: v for k, v in cfg.to_dict().items() if k not in ("dataset", "extra", "data_dir", "seed")}
    base["milestones"] = tuple(base["milestones"])
    runs = [_run_entry(cfg.dataset, {"seed": s}, base, data_dir=cfg.data_dir) for s in seeds]
    exp = _experiment("seeds", cfg.dataset, {"runs": runs, "seeds": seeds}, name or f"seeds of {run_id}",
                      owner, metric)
    exp.notes["source_run"] = run_id
    return exp


def plan_ablation(dataset: str, model: str, *, seeds: int | Sequence[int] = 3, recipe: str = "paper",
                  fixed: Mapping[str, Any] | None = None, variants: Sequence[str] | None = None,
                  name: str | None = None, owner: str | None = None, metric: str = "val_auc",
                  data_dir: str | None = None) -> Experiment:
    """A seed paper's study (:mod:`core.experiments.ablations`): every variant x the same seeds.

    Args:
        dataset: the data.
        model: any model of the study (``arn_cnn``, ``medvlstm``, ``cnn_lstm``, ``quadsnet``...).
        seeds: N (0..N-1) or a list; every variant trains with each, so differences are paired.
        recipe: ``paper`` (the reference model's paper recipe for every variant) or any recipe.
        fixed: settings every run gets (``epochs``, ``image_size``).
        variants: labels to keep (the reference is always kept); None keeps all.
    """
    from core.train import paper_recipe_for

    _check_metric(metric)
    study = study_for(model)
    chosen = [v for v in study.variants if variants is None or v.label in variants or v is study.variants[0]]
    if len(chosen) < 2:
        raise StudioError(f"keep at least one variant besides the reference; {study.key} has: "
                          f"{', '.join(v.label for v in study.variants)}")
    seed_list = _seed_list(seeds) or [0]
    reference_recipe = paper_recipe_for(study.variants[0].model) if recipe == "paper" else recipe
    _check_run_cap(len(chosen) * len(seed_list))
    runs = []
    for variant in chosen:
        for s in seed_list:
            base = {"recipe": reference_recipe or "default", **(fixed or {}), **variant.settings}
            entry = _run_entry(dataset, {"model": variant.model, "seed": s}, base,
                               label=f"{variant.label} seed={s}", data_dir=data_dir)
            entry["variant"] = variant.label
            runs.append(entry)
    exp = _experiment("ablation", dataset, {"runs": runs, "seeds": seed_list}, name or study.title, owner, metric)
    exp.notes["study"] = study.key
    return exp


def plan_auto(dataset: str, minutes: float = 15.0, *, seed: int = 0, image_sizes: Sequence[int] | None = None,
              max_trials: int | None = None, name: str | None = None, owner: str | None = None,
              metric: str = "val_auc", data_dir: str | None = None) -> Experiment:
    """Auto: the best model for ``dataset`` in ``minutes`` of wall-clock time, chosen on validation.

    The search space is sized to the data and the machine when the driver starts
    (:func:`core.experiments.space.size_space`) and written into the plan then.

    Raises:
        StudioError: a budget under half a minute or over the demo's, an unknown dataset.
    """
    from core.limits import current_limits

    _check_metric(metric)
    if not 0.5 <= float(minutes) <= 24 * 60:
        raise StudioError(f"the budget must be between 0.5 and 1440 minutes (got {minutes})")
    limits = current_limits()
    cap = getattr(limits, "max_experiment_minutes", None)
    if cap is not None and minutes > cap:
        raise StudioError(f"this demo gives an Auto search at most {cap} minutes; lower the budget")
    from core.train import make_config, validate

    validate(make_config(dataset, "medvcnn", "default", epochs=1, data_dir=data_dir))  # dataset exists, fits caps
    plan = {"minutes": float(minutes), "seed": int(seed), "image_sizes": list(image_sizes) if image_sizes else None,
            "max_trials": max_trials, "data_dir": data_dir, "space": None}
    return _experiment("auto", dataset, plan, name or f"Auto on {_short(dataset)} ({minutes:g} min)", owner, metric)


def _short(dataset: str) -> str:
    """The dataset as its owner named it (never the server's path or the import's hash)."""
    from core.paths import readable_dataset_name

    return readable_dataset_name(dataset)


def _experiment(kind: str, dataset: str, plan: dict[str, Any], name: str | None, owner: str | None,
                metric: str) -> Experiment:
    exp_id = new_experiment_id(kind)
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise StudioError("an experiment name is some text of at most 200 characters")
    label = name or f"{kind} on {_short(dataset)}"
    return Experiment(id=exp_id, name=" ".join(label.split()), kind=kind, dataset=str(dataset), plan=plan,
                      metric=metric, owner=owner)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"experiments rank runs by {' or '.join(METRICS)}, not '{metric}'")


def _check_run_cap(n: int) -> None:
    from core.limits import current_limits

    cap = getattr(current_limits(), "max_experiment_runs", None)
    if cap is not None and n > cap:
        raise StudioError(f"this plan has {n} runs and this demo allows {cap} per experiment; "
                          "use fewer values or seeds")
    if n > 1000:
        raise StudioError(f"this plan has {n} runs; keep an experiment under 1000 runs (use --random N)")
