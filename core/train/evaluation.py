"""A run's evaluation: predict its splits, then evaluate them, in one function
(:func:`evaluate_splits`) that training (:func:`final_evaluation`), the classical baselines,
``python -m core eval`` (:func:`reevaluate_run`, :func:`evaluate_run`) all go through.

Metrics themselves are :func:`core.evaluate.evaluate_predictions` (from predictions only);
this module knows where the predictions come from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import StudioError
from core.forward import scores_from_logits
from core.train.config import TrainConfig
from core.train.trainer import make_batches, predict_logits

#: ``predict(split) -> (scores (N, K), logits (N, K) or None)``.
Predict = Callable[[str], tuple[np.ndarray, np.ndarray | None]]


def evaluate_splits(predict: Predict, labels: Mapping[str, Any], task: str, class_names: Sequence[str] | None,
                    splits: Sequence[str] = ("val", "test")) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Predict each split, evaluate it, and gather the arrays ``predictions.npz`` holds.

    Args:
        predict: gives a split's probabilities and, for a network, its logits.
        labels: each split's labels (tensor or array).
        task: the task name.
        class_names: one name per class (None: "0", "1", ...).
        splits: the splits, in order.

    Returns:
        ``({split: evaluate_predictions(...)}, {"<split>_scores", "<split>_logits" (when
        there are logits), "<split>_labels": arrays})``; scores and logits as float32.
    """
    from core.evaluate import evaluate_predictions

    evals, arrays = {}, {}
    for split in splits:
        scores, logits = predict(split)
        y = labels[split]
        y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        evals[split] = evaluate_predictions(scores, y, task, None if class_names is None else list(class_names))
        arrays[f"{split}_scores"] = np.asarray(scores).astype(np.float32)
        if logits is not None:
            arrays[f"{split}_logits"] = np.asarray(logits).astype(np.float32)
        arrays[f"{split}_labels"] = y
    return evals, arrays


def final_evaluation(run, model, data, cfg: TrainConfig, device) -> dict[str, Any]:
    """Best weights -> val/test predictions, temperature, metrics and latency, all written to the run.

    Args:
        run: the run (its ``best`` checkpoint, when present, is loaded into ``model``).
        model: the network, on ``device``.
        data: the run's dataset.
        cfg: the run's settings (``tta`` is honoured).
        device: where to predict.

    Returns:
        Fields for ``meta.json``: temperature, latency_ms, test_acc, test_auc.
    """
    from core.calibration import fit_temperature
    from core.models.profile import measure_latency

    best = run.load_checkpoint("best") if run.best_checkpoint.exists() else None
    if best is not None:
        from core.inference import load_weights

        load_weights(model, best, f"the best checkpoint of run '{run.id}'")
    mean, std = _normalization(best, cfg, data)
    channels_last = device.type == "cuda"

    def predict(split: str):
        batches = make_batches(data.images[split], data.labels[split], mean, std)
        logits = predict_logits(model, batches, device, tta=cfg.tta, channels_last=channels_last)
        return scores_from_logits(logits, data.task).numpy(), logits.numpy()

    evals, arrays = evaluate_splits(predict, data.labels, data.task, data.class_names)
    temperature = float(fit_temperature(arrays["val_logits"], arrays["val_labels"], data.task))
    run.write_predictions(**arrays)
    evals["baseline"] = _yardstick(data, cfg.seed)
    run.write_eval(evals)
    # The temperature travels with the best weights, so Classify can apply it when asked.
    if best is not None:
        best["temperature"] = temperature
        run.save_checkpoint("best", best)
    latency = measure_latency(model, (data.channels, cfg.image_size, cfg.image_size), device=str(device))
    return {"temperature": temperature, "latency_ms": latency["median_ms"],
            "test_acc": evals["test"]["acc"], "test_auc": evals["test"]["auc"]}


def _yardstick(data, seed: int) -> dict[str, Any]:
    """The quick classical baseline (core.baseline) the pages set the run beside. It only
    informs, so a failure is recorded in its place (and logged) rather than failing a run
    whose training and evaluation succeeded."""
    from core.baseline import quick_baseline

    try:
        return quick_baseline(data, seed)
    except Exception as exc:  # noqa: BLE001 - recorded in eval.json and in the worker log
        import logging

        logging.getLogger("core.train").exception("the quick baseline could not be fitted")
        return {"skipped": f"the quick baseline could not be fitted ({type(exc).__name__}: {exc})"}


def _normalization(ckpt: dict | None, cfg: TrainConfig, data):
    if ckpt is not None:
        return ckpt["mean"], ckpt["std"]
    from core.models import model_info

    return model_info(cfg.model, data.channels, data.num_classes, cfg.image_size).normalization(cfg.pretrained)


def reevaluate_run(run, store, data_dir: str | None = None) -> dict[str, Any]:
    """Recompute a finished run's evaluation from its best checkpoint (or, for a classical
    baseline, from its saved predictions), rewrite ``eval.json`` and return it.
    """
    from core.checkpoint import check_model_checkpoint
    from core.data import load_dataset
    from core.inference import rebuild_model
    from core.train.device import pick_device

    cfg = TrainConfig.from_dict(run.params()["config"])
    if not run.best_checkpoint.exists():
        preds = run.predictions()
        if preds is None:
            raise StudioError(f"run {run.id} has no checkpoint and no predictions yet; let it finish or resume it.")
        meta = run.meta()
        labels = {s: preds[f"{s}_labels"] for s in ("val", "test")}
        evals, _ = evaluate_splits(lambda s: (preds[f"{s}_scores"], None), labels, meta["task"],
                                   meta.get("class_names"))
        run.write_eval(evals)
        return evals
    ckpt = run.load_checkpoint("best")
    check_model_checkpoint(ckpt, f"the best checkpoint of run '{run.id}'")  # before any key is read
    if (ckpt.get("laterality") or {}).get("side_matters"):
        cfg = cfg.replace(tta=False, mirror=False)  # as in training: never mirror this run's images
    device = pick_device(cfg.device)
    data = load_dataset(cfg.dataset, size=cfg.image_size, data_dir=data_dir or cfg.data_dir, seed=cfg.data_seed)
    model = rebuild_model(ckpt).to(device)
    fields = final_evaluation(run, model, data, cfg, device)
    store.update_meta(run.id, **fields)
    return run.eval()


def load_run_dataset(run, data_dir=None):
    """The dataset a run was trained on, loaded as its training loaded it.

    Args:
        run: a run directory object (the run store's ``Run``).
        data_dir: where MedMNIST files are, if not where the run was trained from.

    Returns:
        The :class:`core.data.ImageDataset` (same name, image size and split seed).

    Raises:
        StudioError: the run records no dataset, or it cannot be loaded on this machine.
    """
    from core.data import load_dataset

    params = run.params()
    config = params.get("config") or {}
    spec = config.get("dataset") or params.get("dataset")
    size = config.get("image_size") or params.get("image_size")
    if not spec or not size:
        raise StudioError(f"run {run.id} does not record its dataset and image size; it cannot be evaluated again.")
    seed = split_seed(params)
    if data_dir is None and config.get("data_dir") and Path(config["data_dir"]).is_dir():
        data_dir = config["data_dir"]  # where it was trained from, while that folder exists; else the default
    return load_dataset(spec, size=int(size), data_dir=data_dir, seed=seed)


def split_seed(params: dict[str, Any]) -> int:
    """The seed that drew a run's train/val/test split (of a folder without one), from params.json."""
    config = params.get("config") or {}
    if isinstance(config.get("split_seed"), int):
        return int(config["split_seed"])
    return int(config.get("seed", params.get("seed", 0)) or 0)


def evaluate_run(run, tta: bool = False, calibrated: bool = False, data_dir=None, device: str = "cpu",
                 splits: Sequence[str] = ("val", "test"), batch_size: int = 256) -> dict:
    """Evaluate a run's best model on its own dataset again, optionally with test-time augmentation.

    The predictions go through :func:`core.inference.predict_tensor`, the function the
    Classify page and ``python -m core predict`` use, so ``tta`` here is the same mirror-image
    averaging (logits of the image and of its horizontal flip) as the page's
    "Test-time augmentation" box. Nothing is written: ``eval.json`` keeps the evaluation made
    with the run's own settings.

    Args:
        run: a run directory object (the run store's ``Run``) with a best checkpoint.
        tta: average each image's logits with those of its mirror image.
        calibrated: divide the logits by the run's fitted temperature first (changes
            log loss and ECE, never the predicted class).
        data_dir: where MedMNIST files are, if not where the run was trained from.
        device: where to predict (``"cpu"``, ``"cuda"``).
        splits: which splits to evaluate.
        batch_size: images per forward pass.

    Returns:
        ``{split: evaluate_predictions(...) + {"tta": bool, "calibrated": bool}}``.

    Raises:
        StudioError: no checkpoint (a classical baseline or an unfinished run), the dataset
            cannot be loaded, or it no longer matches the model (channels, size).
    """
    from core.inference import load_run_model, predict_tensor

    lm = load_run_model(run, "best", device=device)
    data = load_run_dataset(run, data_dir)
    if data.channels != lm.channels or data.image_size != lm.image_size:
        raise StudioError(f"the dataset of run {run.id} now has {data.channels}-channel {data.image_size} px images, "
                          f"but the model takes {lm.channels}-channel {lm.image_size} px ones; it cannot be evaluated.")
    for split in splits:
        if split not in data.images:
            raise StudioError(f"the dataset of run {run.id} has no '{split}' split; "
                              f"choose from {', '.join(data.splits)}.")

    def predict(split: str):
        images = data.images[split]
        chunks = [predict_tensor(lm, images[i:i + batch_size], tta=tta, calibrated=calibrated)["probs"]
                  for i in range(0, len(data.labels[split]), batch_size)]
        return (np.concatenate(chunks) if chunks else np.zeros((0, lm.num_classes), dtype=np.float32)), None

    evals, _ = evaluate_splits(predict, data.labels, lm.task, lm.class_names, splits)
    # A run whose classes name left and right is never mirrored (lm.mirror False).
    return {split: {**ev, "tta": bool(tta) and lm.mirror, "calibrated": bool(calibrated)}
            for split, ev in evals.items()}
