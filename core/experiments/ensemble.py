"""Ensembles as runs: the averaged probabilities of several finished runs, stored as a run.

:func:`create_ensemble_run` writes an ordinary run directory (``params.json``, ``meta.json``,
a best checkpoint, ``eval.json``, ``predictions.npz``) whose model is a
:class:`core.models.ensemble.Ensemble` of the members' best weights, evaluated on the same
validation and test splits the members were. So Compare lists it, Classify and
``python -m core predict`` classify with it, export writes it as one network, and Auto can
keep it when it beats every single run on validation. Its params.json names its members
(``ensemble.members``); it has no training of its own, so it is never resumed or repeated.

:func:`best_ensemble_size` chooses how many of the top runs to average, on validation only,
from the members' saved validation predictions; :func:`ensemble_within_noise` (what Auto
uses) prefers a larger average whose validation deficit is within the noise of the split.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import StudioError
from core.models.ensemble import ENSEMBLE

#: The most runs one ensemble averages (each member costs a forward pass at inference).
MAX_MEMBERS = 8


def create_ensemble_run(store: Any, run_ids: Sequence[str], *, name: str | None = None, owner: str | None = None,
                        marks: Mapping[str, Any] | None = None, data_dir: str | None = None) -> Any:
    """Average finished runs into a new, completed run.

    Args:
        store: the run store.
        run_ids: two to :data:`MAX_MEMBERS` completed neural-network runs of one dataset
            (same classes, task, channels and image size).
        name: the new run's name (default: "ensemble of N runs").
        owner: who asked (the demo's owner rules apply to the new run as to any).
        marks: extra params.json fields (an experiment's member marks).
        data_dir: where MedMNIST files are, if not where the members were trained from.

    Returns:
        The new run (status ``completed``, evaluated).

    Raises:
        StudioError: too few or too many runs, a run that cannot take part (unfinished, a
            classical baseline, an ensemble, another dataset), or a dataset that cannot be loaded;
            nothing is left on disk then.
    """
    from core.inference import load_run_model
    from core.models.ensemble import build_ensemble, member_spec

    ids = list(dict.fromkeys(run_ids))
    if not 2 <= len(ids) <= MAX_MEMBERS:
        raise StudioError(f"an ensemble averages 2 to {MAX_MEMBERS} different runs; {len(ids)} given")
    runs = [store.get(run_id) for run_id in ids]
    for run in runs:
        _check_member(run)
    loaded = [load_run_model(run, "best") for run in runs]
    ckpts = [run.load_checkpoint("best") for run in runs]
    _check_compatible(ids, loaded, [run.params() for run in runs])
    first, first_params = loaded[0], runs[0].params()
    specs = [member_spec(ck, run.id, lm.gradcam_layer) for run, ck, lm in zip(runs, ckpts, loaded)]
    args = {"in_channels": first.channels, "num_classes": first.num_classes, "image_size": first.image_size,
            "pretrained": False, "members": specs}
    model = build_ensemble(args, first.task, first.mean, first.std, nets=[lm.model for lm in loaded])
    config = {**(first_params.get("config") or {}), "model": ENSEMBLE, "tta": all(
        bool((r.params().get("config") or {}).get("tta")) for r in runs)}
    if data_dir:
        config["data_dir"] = data_dir
    params = {**{k: first_params.get(k) for k in ("dataset", "image_size", "seed", "laterality", "versions")},
              "model": ENSEMBLE, "recipe": None, "precision": "fp32", "config": config,
              "ensemble": {"members": ids, "models": [s["model_name"] for s in specs]}, **dict(marks or {})}
    run = store.create_run(params, name=name or f"ensemble of {len(ids)} runs", owner=owner)
    try:
        _fill(store, run, model, args, first, ckpts, runs, config, data_dir)
    except BaseException:
        store.update_meta(run.id, status="failed", finished=_now())  # the store deletes no running run
        store.delete(run.id)
        raise
    return store.get(run.id)


def _check_member(run: Any) -> None:
    from core.models import list_classical

    meta, params = run.meta(), run.params()
    if params.get("model") == ENSEMBLE:
        raise StudioError(f"run {run.id} is an ensemble already; average its members instead")
    if params.get("model") in list_classical():
        raise StudioError(f"run {run.id} is a classical baseline; it keeps no model to average")
    if meta.get("status") != "completed" or not run.best_checkpoint.exists():
        raise StudioError(f"run {run.id} is {meta.get('status', 'unfinished')}; only completed runs can be averaged")


def _check_compatible(ids: list[str], loaded: list[Any], params: list[dict[str, Any]]) -> None:
    from core.data.medmnist_info import is_medmnist
    from core.train.evaluation import split_seed

    first = loaded[0]
    dataset = (params[0].get("config") or {}).get("dataset") or params[0].get("dataset")
    for run_id, lm, p in zip(ids[1:], loaded[1:], params[1:]):
        other = (p.get("config") or {}).get("dataset") or p.get("dataset")
        if other != dataset:
            raise StudioError(f"run {run_id} was trained on another dataset than run {ids[0]}; "
                              "an ensemble averages runs of one dataset")
        if not is_medmnist(str(dataset)) and split_seed(p) != split_seed(params[0]):
            # A folder's split is drawn with the seed: one member's validation images would be
            # another's training images, and the ensemble's validation score would flatter it.
            raise StudioError(f"runs {ids[0]} and {run_id} split the folder into train, validation and test with "
                              f"different seeds ({split_seed(params[0])} and {split_seed(p)}); average runs of one "
                              "split (the same seed, or the same split seed)")
        if (lm.class_names, lm.task) != (first.class_names, first.task):
            raise StudioError(f"run {run_id} has other classes than run {ids[0]}; an ensemble needs the same classes")
        if (lm.channels, lm.image_size) != (first.channels, first.image_size):
            raise StudioError(f"run {run_id} takes {lm.channels}-channel {lm.image_size} px images and run {ids[0]} "
                              f"{first.channels}-channel {first.image_size} px ones; average runs of one image size")


def _fill(store: Any, run: Any, model: Any, args: dict[str, Any], first: Any, ckpts: list[dict], runs: list[Any],
          config: dict[str, Any], data_dir: str | None) -> None:
    """Checkpoint, evaluation and meta of a new ensemble run."""
    import torch

    from core.models.profile import count_parameters
    from core.train import TrainConfig
    from core.train.evaluation import final_evaluation, load_run_dataset

    started = time.time()
    store.update_meta(run.id, status="running", started=_now())
    side = next((ck["laterality"] for ck in ckpts if (ck.get("laterality") or {}).get("side_matters")),
                ckpts[0].get("laterality"))
    run.save_checkpoint("best", {
        "format": ckpts[0].get("format", "studio-checkpoint-v1"), "model_name": ENSEMBLE, "model_args": args,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(first.class_names), "task": first.task, "mean": list(first.mean), "std": list(first.std),
        "config": config, "laterality": side, "train_stats": ckpts[0].get("train_stats"),
    })
    cfg = TrainConfig.from_dict({**config, "milestones": tuple(config.get("milestones") or (0.5, 0.75))})
    if (side or {}).get("side_matters"):
        cfg = cfg.replace(tta=False, mirror=False)
    data = load_run_dataset(runs[0], data_dir)
    fields = final_evaluation(run, model.eval(), data, cfg, torch.device("cpu"))
    metas = [r.meta() for r in runs]
    store.update_meta(run.id, **fields, status="completed", finished=_now(), device="cpu", precision="fp32",
                      task=first.task, class_names=list(first.class_names), params_count=count_parameters(model),
                      n_train=metas[0].get("n_train"), n_val=metas[0].get("n_val"), n_test=metas[0].get("n_test"),
                      laterality=side, epoch=None, epochs=None, epochs_done=None, best_epoch=None, progress=1.0,
                      train_seconds=round(sum(float(m.get("train_seconds") or 0) for m in metas), 3),
                      ensemble_seconds=round(time.time() - started, 3))


def _now() -> str:
    from core.runs.lifecycle import utc_now

    return utc_now()


def best_ensemble_size(val_scores: Sequence[np.ndarray], labels: np.ndarray, task: str, metric: str = "val_auc",
                       max_members: int = MAX_MEMBERS) -> tuple[int, float | None]:
    """How many of the top runs to average: ``(k, its validation score)``.

    ``val_scores`` are the runs' saved validation probabilities, best run first. For each
    ``k`` from 1 the mean of the first ``k`` is scored with ``metric`` (``val_acc`` or
    ``val_auc``; the other breaks ties); the smallest ``k`` with the best score wins, so
    ``k == 1`` (no ensemble) unless averaging does better on validation.
    """
    from core.evaluate import evaluate_predictions

    key, other = ("auc", "acc") if metric == "val_auc" else ("acc", "auc")
    best: tuple[float, float] | None = None
    best_k, best_score = 1, None
    for k in range(1, min(len(val_scores), max_members) + 1):
        ev = evaluate_predictions(np.mean(np.stack(val_scores[:k]), axis=0), labels, task)
        score = (ev.get(key) if ev.get(key) is not None else -1.0, ev.get(other) or -1.0)
        if best is None or score > best:
            best, best_k, best_score = score, k, ev.get(key)
    return best_k, best_score


#: Bootstrap resamples of the validation split behind :func:`ensemble_within_noise`.
N_BOOT = 200


def ensemble_within_noise(val_scores: Sequence[np.ndarray], labels: np.ndarray, task: str, metric: str = "val_auc",
                          max_members: int = MAX_MEMBERS, n_boot: int = N_BOOT,
                          seed: int = 0) -> tuple[int, float | None, float]:
    """How many of the top runs to average, preferring the steadier average within the noise:
    ``(k, its validation score, the tolerance that let it in)``.

    :func:`best_ensemble_size` keeps the ``k`` with the best validation score. On a small
    validation split that best score is partly luck: the run ranked first among several is the
    one whose errors happened to fall outside the validation images, and averaging it with the
    next ones is what does better on new images (measured in BENCHMARKS.md, breastmnist).
    So, as in the one-standard-error rule of model selection, a ``k`` is admissible when its
    validation deficit is at most one standard error of the paired difference (estimated by
    resampling the validation images, ``n_boot`` draws, seeded: the same inputs give the same
    answer) on **both** metrics: against the best ``k`` on ``metric`` and against the best
    ``k`` on the other one (ACC for AUC). Reading one metric only is blind where it saturates:
    on a large, easy split a validation AUC of 0.9995 cannot tell an average that loses 0.2 %
    of accuracy from one that does not (BENCHMARKS.md, bloodmnist). The largest admissible
    ``k`` wins, with the tolerance of its ``metric`` difference (0.0 for the best ``k``
    itself); when none is admissible, :func:`best_ensemble_size`'s ``k`` and 0.0.
    """
    best_k, best_score = best_ensemble_size(val_scores, labels, task, metric, max_members)
    top = min(len(val_scores), max_members)
    if top < 2:
        return best_k, best_score, 0.0
    y = _label_matrix(labels, task, val_scores[0].shape[1])
    means = [np.mean(np.stack(val_scores[:k]), axis=0) for k in range(1, top + 1)]
    fast, other = (_auc, _acc) if metric == "val_auc" else (_acc, _auc)
    others = [other(m, y, task) for m in means]
    best_other = max(range(top), key=lambda i: (others[i] if others[i] is not None else -1.0, -i)) + 1
    draws = _draws(len(y), n_boot, seed)
    for k in range(top, 0, -1):
        full, tolerance = (0.0, 0.0) if k == best_k else _paired(means[best_k - 1], means[k - 1], y, task, fast, draws)
        if full is None or full > tolerance:
            continue
        if others[best_other - 1] is not None and best_other != k:
            gap, noise = _paired(means[best_other - 1], means[k - 1], y, task, other, draws)
            if gap is not None and gap > noise:
                continue  # within the noise on the ranking metric, beyond it on the other
        from core.evaluate import evaluate_predictions

        key = "auc" if metric == "val_auc" else "acc"
        return k, evaluate_predictions(means[k - 1], labels, task).get(key), tolerance
    return best_k, best_score, 0.0


def paired_margin(first: np.ndarray, second: np.ndarray, labels: np.ndarray, task: str, metric: str = "val_auc",
                  n_boot: int = N_BOOT, seed: int = 0) -> tuple[float | None, float]:
    """How much better ``first``'s validation probabilities score than ``second``'s, and the
    noise of that difference: ``(margin, one standard error)``.

    The margin is ``metric`` (``val_auc`` or ``val_acc``) of the first less that of the second on
    the whole split; the standard error is the spread of that paired difference over ``n_boot``
    resamples of the validation images (seeded, as in :func:`ensemble_within_noise`). ``(None,
    0.0)`` when the metric is undefined on the split or on most resamples.
    """
    y = _label_matrix(labels, task, first.shape[1])
    fast = _auc if metric == "val_auc" else _acc
    return _paired(first, second, y, task, fast, _draws(len(y), n_boot, seed))


def _draws(n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(n_boot)]


def _paired(first: np.ndarray, second: np.ndarray, y: np.ndarray, task: str, fast: Any,
            draws: list[np.ndarray]) -> tuple[float | None, float]:
    """``(fast(first) - fast(second), the std of that difference over the resamples draws)``."""
    whole = fast(first, y, task), fast(second, y, task)
    diffs = [u - v for i in draws if (u := fast(first[i], y[i], task)) is not None
             and (v := fast(second[i], y[i], task)) is not None]
    if None in whole or len(diffs) < len(draws) // 2:
        return None, 0.0
    return whole[0] - whole[1], float(np.std(diffs))


def _label_matrix(labels: np.ndarray, task: str, k: int) -> np.ndarray:
    """(N, K) 0/1: the labels one-hot (single-label tasks) or as they are (multi-label)."""
    labels = np.asarray(labels)
    if task == "multi-label":
        return labels.reshape(len(labels), -1).astype(np.int8)
    return np.eye(k, dtype=np.int8)[labels.reshape(-1).astype(int)]


def _auc(p: np.ndarray, y: np.ndarray, task: str) -> float | None:
    """Mean one-vs-rest AUC over the columns (for binary, the positive class's AUC, as medmnist
    computes it); None when a column holds one outcome only. Mann-Whitney ranks, ties halved."""
    from scipy.stats import rankdata

    pos = y.sum(axis=0)
    neg = len(y) - pos
    if (pos == 0).any() or (neg == 0).any():
        return None
    ranks = rankdata(p, axis=0)
    return float(np.mean(((ranks * y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)))


def _acc(p: np.ndarray, y: np.ndarray, task: str) -> float | None:
    """Accuracy: argmax for single-label tasks, each label at 0.5 for multi-label."""
    if task == "multi-label":
        return float(((p > 0.5) == y.astype(bool)).mean())
    return float((p.argmax(axis=1) == y.argmax(axis=1)).mean())
