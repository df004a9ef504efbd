"""What an experiment's runs add up to: the leaderboard, the best run (validation only), the
seeds summary with 95 % intervals, and the ablation table beside the papers' claims.

Selection never reads a test score: :func:`select_best` ranks completed members by the
validation metric alone, and test figures are only displayed.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from core.errors import StudioError
from core.experiments.ablations import STUDIES
from core.experiments.members import best_so_far, member_rows  # noqa: F401  (best_so_far: public here too)
from core.experiments.record import Experiment

_OTHER = {"val_auc": "val_acc", "val_acc": "val_auc"}


def leaderboard(store: Any, exp: Experiment, live: bool = True) -> list[dict[str, Any]]:
    """The members ranked by the validation metric, best first (the run :func:`select_best`
    keeps is first, even when it is an ensemble a little below a single run).

    Args:
        store: the run store.
        exp: the experiment.
        live: for runs not finished yet, read the best epoch so far from metrics.jsonl.

    Returns:
        Rows with ``rank, run_id, label, settings, status, score`` (the validation metric
        used for ranking: eval.json's when completed, else the best epoch so far),
        ``val_acc, val_auc, test_acc, test_auc, epochs_done, epochs, train_seconds, created,
        finished, error``. Rows without a score come last, unranked (``rank`` None).
    """
    metric = exp.metric
    rows = member_rows(store, exp)
    for row in rows:
        score = row.get(metric)
        if score is None and row.get("status") == "completed":
            score = row.get(_OTHER[metric])  # an AUC undefined on a one-class val split
        if score is None and live and row.get("status") in ("running", "queued"):
            score = best_so_far(store, row["run_id"], metric)
        row["score"] = score
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), -(r.get(_OTHER[metric]) or 0.0), r["run_id"]))
    chosen = select_best(rows, metric)
    if chosen is not None and _tolerance(chosen) > 0:  # an ensemble kept within the noise goes
        rows.remove(chosen)                            # before the single runs it was kept over
        rows.insert(next((i for i, r in enumerate(rows) if r.get("status") == "completed"), len(rows)), chosen)
    for i, row in enumerate(rows, 1):
        row["rank"] = i if row["score"] is not None else None
    return rows


def select_best(rows: Iterable[Mapping[str, Any]], metric: str = "val_auc") -> Mapping[str, Any] | None:
    """The completed run with the highest validation ``metric`` (ties: the other validation
    metric, then the earlier run), or an ensemble of Auto's within its recorded tolerance of
    that score (see :func:`_tolerance`). Test columns are never looked at.

    Returns:
        The row, or None when no member has completed with a validation score.
    """
    other = _OTHER[metric]
    done = [r for r in rows if r.get("status") == "completed" and (r.get(metric) is not None or r.get(other) is not None)]
    if not done:
        return None

    def main(r: Mapping[str, Any]) -> float:
        return r.get(metric) if r.get(metric) is not None else r.get(other)

    def key(r: Mapping[str, Any]) -> tuple:
        return (main(r), r.get(other) if r.get(other) is not None else -1.0, _neg_id(r["run_id"]))

    best = max(done, key=key)
    steady = [r for r in done if _tolerance(r) > 0 and main(r) >= main(best) - _tolerance(r)]
    return max(steady, key=key) if steady else best


def _tolerance(row: Mapping[str, Any]) -> float:
    """How far below the best single run's validation score an ensemble member may be and still
    be kept (Auto's one-standard-error rule, :func:`core.experiments.ensemble.ensemble_within_noise`)."""
    trial = row.get("trial")
    value = trial.get("tolerance") if isinstance(trial, Mapping) and trial.get("ensemble") else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else 0.0


def best_curve(rows: Iterable[Mapping[str, Any]], started: str | None, metric: str = "val_auc") -> list[dict[str, Any]]:
    """The best validation score so far, each time a member completed (for the live chart).

    Args:
        rows: leaderboard rows (``finished``, ``status`` and the validation columns).
        started: the experiment's start time (ISO), the curve's zero.
        metric: the validation metric.

    Returns:
        ``[{"seconds", "best", "run_id"}]`` in time order; ``run_id`` is the best run at that point.
    """
    from core.experiments.record import parse_time

    zero = parse_time(started)
    done = sorted((r for r in rows if r.get("status") == "completed" and parse_time(r.get("finished"))),
                  key=lambda r: parse_time(r["finished"]))
    out, best, best_id = [], None, None
    for r in done:
        value = r.get(metric) if r.get(metric) is not None else r.get(_OTHER[metric])
        if value is not None and (best is None or value > best):
            best, best_id = value, r["run_id"]
        if best is not None:
            out.append({"seconds": parse_time(r["finished"]) - (zero or parse_time(done[0]["finished"])),
                        "best": best, "run_id": best_id})
    return out


def _neg_id(run_id: str) -> tuple:
    return tuple(-ord(c) for c in run_id)  # earlier (smaller) ids win ties under max()


def t_interval(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """The ``level`` confidence interval of a mean from ``n`` samples (Student's t); None for n < 2."""
    if n < 2 or mean is None or std is None:
        return None, None
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def _numeric_keys(evals: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for e in evals:
        for k, v in e.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys and k != "n":
                keys.append(k)
        for k, v in (e.get("macro") or {}).items():
            if isinstance(v, (int, float)) and f"macro_{k}" not in keys:
                keys.append(f"macro_{k}")
    return keys


def seeds_summary(store: Any, exp: Experiment, splits: Sequence[str] = ("val", "test")) -> dict[str, dict[str, Any]]:
    """Mean, std and 95 % t interval of every numeric metric over the completed members.

    Returns:
        ``{"test.acc": {"mean", "std", "n", "low", "high", "values"}, ...}`` for each split
        and each top-level number of eval.json (and the macro averages as ``macro_f1``...).
        The std is the sample std (ddof=1), as :func:`core.evaluate.summarize_seeds`.
    """
    from core.evaluate import summarize_seeds

    evals = []
    for row in member_rows(store, exp):
        if row.get("status") == "completed":
            ev = store.get(row["run_id"]).eval()
            if ev:
                evals.append(ev)
    if not evals:
        raise StudioError("no member run has completed yet; the summary needs at least one")
    out: dict[str, dict[str, Any]] = {}
    for split in splits:
        split_evals = [_flat(e[split]) for e in evals if isinstance(e.get(split), dict)]
        if not split_evals:
            continue
        keys = _numeric_keys(split_evals)
        for key, s in summarize_seeds(split_evals, keys).items():
            low, high = t_interval(s["mean"], s["std"], s["n"])
            values = [float(e[key]) for e in split_evals if isinstance(e.get(key), (int, float))]
            out[f"{split}.{key}"] = {**s, "low": low, "high": high, "values": values}
    return out


def _flat(e: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(e)
    for k, v in (e.get("macro") or {}).items():
        out[f"macro_{k}"] = v
    return out


def ablation_table(store: Any, exp: Experiment, metrics: Sequence[str] = ("test_acc", "test_auc"),
                   alpha: float = 0.05) -> list[dict[str, Any]]:
    """Each variant against the reference, paired over the seeds both completed.

    Returns:
        One row per (variant, metric): ``variant, reference, metric, n_pairs, reference_mean,
        variant_mean, difference`` (mean of variant - reference over paired seeds), ``spread``
        (sample std of those paired differences), ``p_value`` (paired t-test,
        ``scipy.stats.ttest_rel``), ``beyond_spread`` (True / False / None when it cannot be
        told), ``verdict`` (a sentence), ``paper_reference, paper_variant, paper_difference``
        (the paper's ACC claims, only on ``*_acc`` rows), ``paper_agrees`` and ``claim_note``.
    """
    study = STUDIES.get(exp.notes.get("study", ""))
    if exp.kind != "ablation" or study is None:
        raise StudioError(f"experiment {exp.id} is not an ablation; the table needs one")
    reference = study.variants[0].label
    by_variant: dict[str, dict[int, dict[str, Any]]] = {}
    for row in member_rows(store, exp):
        if row.get("status") == "completed" and row.get("variant"):
            by_variant.setdefault(row["variant"], {})[row.get("seed")] = row
    ref_runs = by_variant.get(reference, {})
    out = []
    for variant in study.variants[1:]:
        runs = by_variant.get(variant.label)
        if runs is None and not any(r.get("variant") == variant.label for r in exp.planned_runs):
            continue  # not part of this (smaller) ablation
        runs = runs or {}
        for metric in metrics:
            pairs = [(ref_runs[s][metric], runs[s][metric]) for s in sorted(ref_runs.keys() & runs.keys())
                     if ref_runs[s].get(metric) is not None and runs[s].get(metric) is not None]
            out.append(_compare(study, exp.dataset, reference, variant.label, metric, pairs, alpha))
    return out


def _compare(study, dataset: str, reference: str, variant: str, metric: str,
             pairs: list[tuple[float, float]], alpha: float) -> dict[str, Any]:
    import numpy as np

    row: dict[str, Any] = {"variant": variant, "reference": reference, "metric": metric, "n_pairs": len(pairs),
                           "reference_mean": None, "variant_mean": None, "difference": None, "spread": None,
                           "p_value": None, "beyond_spread": None}
    if pairs:
        ref, var = np.array(pairs, dtype=float).T
        diffs = var - ref
        row.update(reference_mean=float(ref.mean()), variant_mean=float(var.mean()), difference=float(diffs.mean()))
        if len(pairs) >= 2:
            row["spread"] = float(diffs.std(ddof=1))
            if row["spread"] > 0:
                from scipy import stats

                row["p_value"] = float(stats.ttest_rel(var, ref).pvalue)
                row["beyond_spread"] = row["p_value"] < alpha
            else:  # the same difference on every seed: no spread at all
                row["beyond_spread"] = bool(abs(row["difference"]) > 0)
    row["verdict"] = _verdict(row, alpha)
    claim_ref = study.claim_for(dataset, reference) if metric.endswith("acc") else None
    claim_var = study.claim_for(dataset, variant) if metric.endswith("acc") else None
    row["paper_reference"], row["paper_variant"] = claim_ref, claim_var
    row["paper_difference"] = claim_var - claim_ref if claim_ref is not None and claim_var is not None else None
    agrees = None
    if row["paper_difference"] is not None and row["difference"] is not None and row["paper_difference"] != 0:
        agrees = (row["paper_difference"] > 0) == (row["difference"] > 0)
    row["paper_agrees"] = agrees
    row["claim_note"] = study.claim_note
    return row


def _verdict(row: Mapping[str, Any], alpha: float) -> str:
    n, d = row["n_pairs"], row["difference"]
    if n == 0:
        return "no seed has finished for both yet"
    if n == 1:
        return f"{d:+.4f} on one seed: no seed-to-seed spread to compare it with (run more seeds)"
    if row["p_value"] is None:
        if row["beyond_spread"]:
            return f"{d:+.4f} on every one of {n} seeds alike: larger than the seed-to-seed spread"
        return f"no difference on any of {n} seeds"
    if row["beyond_spread"]:
        return f"{d:+.4f} is larger than the seed-to-seed spread (paired t-test over {n} seeds, p = {row['p_value']:.3f})"
    return (f"{d:+.4f} is within the seed-to-seed spread (paired t-test over {n} seeds, p = {row['p_value']:.3f} "
            f"≥ {alpha:g})")
