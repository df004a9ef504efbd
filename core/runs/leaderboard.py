"""What the Compare page tabulates about runs, without the page: which recipe a run used
(read from its params.json) and which finished runs differ only by their seed.

Plain values in, plain values out; the page reads the files (cached) and formats.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from core.evaluate import summarize_seeds


def recipe_of(params: Mapping[str, Any] | None) -> str:
    """The recipe a run was trained with, from its params.json (``"?"`` when it says none).

    Args:
        params: the run's params (``{"recipe": ...}`` or ``{"config": {"recipe": ...}}``).

    Returns:
        The recipe name.
    """
    params = params or {}
    return str(params.get("recipe") or (params.get("config") or {}).get("recipe") or "?")


def seed_groups(rows: Iterable[Mapping[str, Any]], recipe: Callable[[Mapping[str, Any]], str],
                test: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """Finished runs that differ only by their seed (same dataset, model, image size and
    recipe), with two seeds or more, and the mean and spread of their test scores.

    Args:
        rows: run index rows (``status``, ``seed``, ``dataset``, ``model``, ``image_size``).
        recipe: row -> its recipe name (see :func:`recipe_of`).
        test: row -> its ``eval.json["test"]`` (None or ``{}`` when it has none).

    Returns:
        One dict per group: ``dataset``, ``model``, ``image_size``, ``recipe``, ``seeds``
        (sorted), ``runs`` (how many have test scores), ``acc`` and ``auc``
        (``{"mean", "std"}`` as :func:`core.evaluate.summarize_seeds` gives them).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("status") != "completed" or r.get("seed") is None:
            continue
        groups.setdefault((r["dataset"], r["model"], r["image_size"], recipe(r)), []).append(r)
    out = []
    for (dataset, model, size, name), members in groups.items():
        if len({m["seed"] for m in members}) < 2:
            continue
        tests = [t for t in (test(m) or {} for m in members) if "acc" in t]
        if len(tests) < 2:
            continue
        summary = summarize_seeds(tests, keys=("acc", "auc"))
        out.append({"dataset": dataset, "model": model, "image_size": size, "recipe": name,
                    "seeds": sorted(m["seed"] for m in members), "runs": len(tests),
                    "acc": summary["acc"], "auc": summary["auc"]})
    return out


def mean_std_text(summary: Mapping[str, Any]) -> str:
    """``0.812 ± 0.034``, or ``-`` when there is no mean."""
    return "-" if summary.get("mean") is None else f"{summary['mean']:.3f} ± {summary['std']:.3f}"
