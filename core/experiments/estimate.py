"""How long an experiment will take, before it starts, and the demo's budget per visitor.

A run's time is its epochs times the seconds one epoch took in earlier completed runs of the
same architecture and image size here (scaled by the number of images); without such a run,
a rough figure from the model's size, said to be rough.
"""

from __future__ import annotations

import statistics
from typing import Any

from core.errors import StudioError
from core.experiments.record import Experiment, ExperimentBook

# Rough CPU cost of one image through one training step of a 100k-parameter model at 28 px,
# in seconds; only used when no earlier run of the model gives a real figure.
_ROUGH_S_PER_IMAGE = 4e-4


def _images(dataset: str) -> int | None:
    try:  # core.data.catalogue is its home now; core.limits held it before the split
        from core.data.catalogue import count_dataset_images
    except ImportError:  # pragma: no cover
        from core.limits import count_dataset_images  # type: ignore[no-redef]
    try:
        return count_dataset_images(dataset)
    except Exception:  # noqa: BLE001 - an unreadable folder only loses the scaling
        return None


def epoch_seconds(store: Any, model: str, image_size: int, dataset: str) -> tuple[float, str]:
    """Seconds one epoch of ``model`` at ``image_size`` on ``dataset`` should take here.

    Returns:
        ``(seconds, source)``: source is ``"measured"`` (from earlier runs) or ``"rough"``.
    """
    n_here = _images(dataset)
    per_image = []
    for row in store.list_runs(model=model, status="completed"):
        if row.get("image_size") != image_size or not row.get("train_seconds") or not row.get("epochs_done"):
            continue
        n = _images(row["dataset"]) if row.get("dataset") else None
        if n:
            per_image.append(row["train_seconds"] / row["epochs_done"] / n)
        if len(per_image) >= 10:
            break
    if per_image and n_here:
        return statistics.median(per_image) * n_here, "measured"
    from core.models import model_info

    try:
        params = model_info(model, 3, 10, image_size).params
    except Exception:  # noqa: BLE001
        params = 1_000_000
    scale = max(0.3, (params / 1e5) ** 0.5) * (image_size / 28) ** 2
    return _ROUGH_S_PER_IMAGE * scale * (n_here or 10_000), "rough"


def estimate_experiment(store: Any, exp: Experiment, concurrency: int = 1) -> dict[str, Any]:
    """Runs and wall-clock seconds an experiment should need.

    Args:
        store: the run store (its completed runs give the per-epoch times).
        exp: a planned experiment.
        concurrency: runs trained at once.

    Returns:
        ``{"runs", "seconds", "source"}``: for Auto, ``runs`` is None (as many trials as fit)
        and ``seconds`` its budget; ``source`` says ``measured``, ``rough`` or ``budget``.
    """
    if exp.kind == "auto":
        return {"runs": None, "seconds": float(exp.plan["minutes"]) * 60, "source": "budget"}
    total, sources = 0.0, set()
    cache: dict[tuple, tuple[float, str]] = {}
    for entry in exp.planned_runs:
        cfg = entry["config"]
        key = (cfg["model"], cfg["image_size"])
        if key not in cache:
            cache[key] = epoch_seconds(store, cfg["model"], cfg["image_size"], exp.dataset)
        seconds, source = cache[key]
        run_s = seconds * cfg["epochs"]
        if cfg.get("max_minutes"):
            run_s = min(run_s, cfg["max_minutes"] * 60)
        total += run_s + 5.0  # a worker's start and the final evaluation
        sources.add(source)
    source = "rough" if "rough" in sources else "measured"
    return {"runs": len(exp.planned_runs), "seconds": total / max(1, concurrency), "source": source}


def check_visitor_budget(store: Any, exp: Experiment) -> None:
    """In the demo, refuse an experiment that would take a visitor past their total budget.

    The budget (``STUDIO_DEMO_EXPERIMENT_MINUTES``) counts the estimated minutes of every
    experiment the visitor has stored, this one included.

    Raises:
        StudioError: over the runs-per-experiment cap or the visitor's budget.
    """
    from core.limits import current_limits

    limits = current_limits()
    cap_runs = getattr(limits, "max_experiment_runs", None)
    if cap_runs is not None and len(exp.planned_runs) > cap_runs:
        raise StudioError(f"this plan has {len(exp.planned_runs)} runs and this demo allows {cap_runs} "
                          "per experiment; use fewer values or seeds")
    budget = getattr(limits, "max_experiment_minutes", None)
    if budget is None:
        return
    used = visitor_minutes(store, exp.owner, exclude=exp.id)
    wanted = estimate_experiment(store, exp)["seconds"] / 60
    if used + wanted > budget:
        raise StudioError(f"this experiment needs about {wanted:.0f} min and you have used {used:.0f} of the "
                          f"{budget} min this demo gives each visitor; delete an experiment or plan a smaller one")


def visitor_minutes(store: Any, owner: str | None, exclude: str | None = None) -> float:
    """Estimated minutes of every stored experiment of ``owner`` (what the demo's budget per
    visitor counts), leaving out the experiment ``exclude``."""
    book = ExperimentBook(store)
    used = 0.0
    for row in book.list():
        if row.get("owner") == owner and row["exp_id"] != exclude:
            try:
                used += estimate_experiment(store, book.get(row["exp_id"]))["seconds"] / 60
            except StudioError:
                continue
    return used
