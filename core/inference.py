"""Using a trained run: load its best checkpoint, turn uploaded files into tensors, predict
(plainly, or with Monte-Carlo dropout; :func:`predict_images` is the Classify page's one predictor).

The Classify page, ``python -m core predict`` and the benchmarks all go through these
functions, so a label shown in the browser is the label the command line prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.checkpoint import check_model_checkpoint
from core.errors import StudioError
from core.forward import forward_logits, normalization, normalize, scores_from_logits
from core.models.profile import has_dropout, is_dropout
from core.vocab import TASKS


@dataclass
class LoadedModel:
    """A run's network, ready for inference on the CPU (or the device it was moved to)."""

    run_id: str
    model: nn.Module
    model_name: str
    class_names: list[str]
    task: str
    mean: list[float]
    std: list[float]
    image_size: int
    channels: int
    temperature: float
    gradcam_layer: str | None
    device: torch.device
    #: False for a run whose classes name left and right: no mirror averaging (tta) then.
    mirror: bool = True
    #: Why mirroring is off, in words ("" when it is allowed).
    mirror_reason: str = ""
    #: The training images' statistics (core.fit_check.training_image_stats); None for
    #: runs trained before they were recorded.
    train_stats: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def rebuild_model(ckpt: dict) -> nn.Module:
    """The checkpoint's architecture with random weights (load its ``state_dict`` next).

    A run started from ImageNet weights keeps that architecture (for example the ResNets'
    ImageNet stem at 28 px); it is rebuilt without downloading anything.
    """
    from core.models import create_model
    from core.models.ensemble import ENSEMBLE, build_ensemble
    from core.models.weights import architecture_only

    args = ckpt["model_args"]
    if ckpt["model_name"] == ENSEMBLE:  # several runs' networks, averaged (core.models.ensemble)
        return build_ensemble(args, ckpt["task"], ckpt["mean"], ckpt["std"], rebuild=rebuild_model)
    pretrained = bool(args.get("pretrained", (ckpt.get("config") or {}).get("pretrained", False)))
    with architecture_only():
        return create_model(ckpt["model_name"], int(args["in_channels"]), int(args["num_classes"]),
                            int(args["image_size"]), pretrained=pretrained)


def load_weights(model: nn.Module, ckpt: dict, what: str) -> None:
    """Load ``ckpt["state_dict"]`` into ``model``; weights of another shape are a damaged checkpoint.

    Raises:
        StudioError: naming ``what`` (e.g. "the best checkpoint of run 'r1'") and what to do.
    """
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # missing / unexpected keys, or tensors of the wrong shape
        first = str(exc).splitlines()[0].rstrip(":. ")
        raise StudioError(
            f"{what} is a damaged checkpoint: its weights do not fit a {ckpt.get('model_name')} model ({first[:160]}); "
            "train or resume the run again to write a new one, or pick another run"
        ) from exc


def load_run_model(run, which: str = "best", device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a run's model from its checkpoint.

    Args:
        run: a :class:`core.runs.Run`.
        which: ``best`` or ``last``.
        device: where to put the model.

    Returns:
        The model in eval mode with everything needed to preprocess and label.
    """
    path = run.best_checkpoint if which == "best" else run.last_checkpoint
    if not path.exists():
        from core.models import list_classical

        meta = run.meta()
        model_name = run.params().get("model")
        if model_name in list_classical():
            # The fitted estimator is never saved (it would be a pickle; see core.train.classical_run).
            raise StudioError(f"run {run.id} is a classical baseline ({model_name}): the studio keeps its scores "
                              "for comparison, not a model, so it cannot classify images; use a neural-network run.")
        status = meta.get("status", "unknown")
        raise StudioError(f"run {run.id} has no {which} checkpoint (it is {status}); pick a finished neural-network run.")
    ckpt = run.load_checkpoint(which)
    what = f"the {which} checkpoint of run '{run.id}'"
    check_model_checkpoint(ckpt, what)
    args = ckpt["model_args"]
    model = rebuild_model(ckpt)
    load_weights(model, ckpt, what)
    device = torch.device(device)
    model.to(device).eval()
    side = _run_laterality(run, ckpt)
    stats = ckpt.get("train_stats") or run.meta().get("train_stats")
    return LoadedModel(run.id, model, ckpt["model_name"], list(ckpt["class_names"]), ckpt["task"],
                       list(ckpt["mean"]), list(ckpt["std"]), int(args["image_size"]), int(args["in_channels"]),
                       float(ckpt.get("temperature", 1.0)), _gradcam_layer(model, ckpt), device,
                       mirror=not side.side_matters, mirror_reason=side.reason(),
                       train_stats=stats if isinstance(stats, dict) else None)


def _gradcam_layer(model: nn.Module, ckpt: dict) -> str | None:
    """The layer Grad-CAM hooks: the registry's for a zoo model, an ensemble's first member's
    (core.explain sums the maps of all its members' layers)."""
    from core.models import model_info

    layers = getattr(model, "gradcam_layers", None)
    if isinstance(layers, list):
        return layers[0] if layers else None
    args = ckpt["model_args"]
    return model_info(ckpt["model_name"], args["in_channels"], args["num_classes"], args["image_size"]).gradcam_layer


def _run_laterality(run, ckpt: dict):
    """Whether a run's images may be mirrored: what training recorded in the checkpoint,
    else (older runs) what its class names say."""
    from core.data.laterality import Laterality, dataset_laterality

    if isinstance(ckpt.get("laterality"), dict):
        return Laterality.from_dict(ckpt["laterality"])
    try:
        spec = run.params().get("dataset")
    except (StudioError, OSError, ValueError):  # a damaged params.json: decide from the names alone
        spec = None
    return dataset_laterality(spec, ckpt.get("class_names") or [])


def preprocess(lm: LoadedModel, images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float on the model's device."""
    return normalize(images_u8.to(lm.device), *normalization(lm.mean, lm.std, lm.channels))


def load_image_tensor(lm: LoadedModel, data: bytes | str | Path, name: str | None = None) -> torch.Tensor:
    """Decode one file (bytes or path) to the model's size and channels: uint8 (C, H, W)."""
    from core.data import decode_image, image_to_tensor

    img = decode_image(data, name=name)
    return image_to_tensor(img, lm.image_size, lm.channels)


@torch.inference_mode()
def predict_tensor(lm: LoadedModel, images_u8: torch.Tensor, tta: bool = False,
                   calibrated: bool = False) -> dict[str, np.ndarray]:
    """Class probabilities for a batch of uint8 images.

    Args:
        lm: the loaded model.
        images_u8: uint8 (N, C, H, W) at the model's size.
        tta: average over the image and its horizontal flip; ignored (no flip) for a run
            whose classes name left and right (``lm.mirror`` False), where a mirror image
            would show the other side.
        calibrated: divide logits by the run's fitted temperature.

    Returns:
        ``probs`` (N, K), ``logits`` (N, K), ``pred`` (N,) class index, ``entropy`` (N,).
    """
    from core.uncertainty import predictive_entropy

    logits = forward_logits(lm.model, preprocess(lm, images_u8), tta=tta and lm.mirror)
    t = lm.temperature if calibrated else 1.0
    logits = (logits / t).cpu()
    probs_np = scores_from_logits(logits, lm.task).numpy()
    return {"probs": probs_np, "logits": logits.numpy(), "pred": probs_np.argmax(axis=1),
            "entropy": predictive_entropy(probs_np, lm.task)}


def mc_dropout_predict(
    model: nn.Module,
    x: torch.Tensor,
    n_passes: int = 20,
    seed: int = 0,
    task: str = "multi-class",
    tta: bool = False,
    temperature: float = 1.0,
) -> dict:
    """Monte-Carlo dropout: average several stochastic forward passes.

    The model runs in eval mode (batch norm uses its running statistics) except its dropout
    modules, which are switched to train mode so they keep sampling masks: nn.Dropout and
    its relatives, and nn.RNNBase modules (LSTM, GRU, RNN) with inter-layer dropout, whose
    train mode changes nothing but that dropout. Functional dropout inside a forward and
    stochastic depth (DropPath) stay off. Every module's mode is restored afterwards, even
    on error, and the global random state is left untouched (the passes draw from a forked
    generator seeded with ``seed``), so the same seed gives the same result.

    A model without dropout is deterministic, so it gets one pass and a std of exactly 0.

    Args:
        model: a classifier returning (B, K) logits; it must already be on x's device.
        x: a (B, ...) input batch.
        n_passes: number of stochastic passes (>= 1).
        seed: seed of the dropout masks.
        task: "multi-label" applies a sigmoid per label; every other task a softmax.
        tta: in every pass, average the logits of the batch and of its mirror image (as
            :func:`predict_tensor` does).
        temperature: divide each pass's logits by this before the softmax/sigmoid (the
            run's fitted temperature for calibrated probabilities).

    Returns:
        {"mean": (B, K) mean probabilities, "std": (B, K) population std (ddof=0) of the
        probabilities over passes, "entropy": (B,) predictive entropy of the mean, in nats,
        "n_passes": passes actually run}, arrays as float64 numpy.
    """
    if task not in TASKS:
        raise StudioError(f"Unknown task '{task}'; use one of {', '.join(TASKS)}.")
    if n_passes < 1:
        raise StudioError(f"MC dropout needs at least one pass, got n_passes={n_passes}.")
    if not (np.isfinite(temperature) and temperature > 0):
        raise StudioError(f"The temperature must be a positive number, got {temperature}.")
    modes = {m: m.training for m in model.modules()}
    stochastic = has_dropout(model)
    passes = n_passes if stochastic else 1
    # fork_rng forks the CPU generator always, and a CUDA one only where named.
    devices = [x.device.index] if x.device.type == "cuda" else []
    try:
        model.eval()
        for m in model.modules():
            if is_dropout(m):
                m.train()
        probs = []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for _ in range(passes):
                logits = forward_logits(model, x, tta, dtype=torch.float64)
                probs.append(scores_from_logits(logits, task, float(temperature)).cpu().numpy())
    finally:
        # Set the flag itself: train(mode) recurses into children and may be overridden.
        for m, was_training in modes.items():
            m.training = was_training
    from core.uncertainty import predictive_entropy

    stack = np.stack(probs)  # (passes, B, K)
    mean = stack.mean(axis=0)
    std = stack.std(axis=0) if passes > 1 else np.zeros_like(mean)
    return {"mean": mean, "std": std, "entropy": predictive_entropy(mean, task), "n_passes": passes}


def predict_images(lm: LoadedModel, images_u8: torch.Tensor, tta: bool = False, calibrated: bool = False,
                   mc_passes: int | None = None) -> dict[str, np.ndarray | None]:
    """The Classify page's one predictor: plain probabilities, or with ``mc_passes`` the mean
    and spread of Monte-Carlo dropout passes, under the same mirror and temperature rules.

    Args:
        lm: the loaded model.
        images_u8: uint8 (N, C, H, W) at the model's size.
        tta: mirror averaging (never for a run whose classes name left and right).
        calibrated: divide logits by the run's fitted temperature.
        mc_passes: Monte-Carlo dropout passes; None or 0 for one plain prediction.

    Returns:
        ``probs`` (N, K), ``spread`` (N, K) standard deviation over passes or None without
        MC dropout, ``entropy`` (N,) of ``probs``.
    """
    from core.uncertainty import predictive_entropy

    if mc_passes:
        out = mc_dropout_predict(lm.model, preprocess(lm, images_u8), n_passes=mc_passes, seed=0, task=lm.task,
                                 tta=tta and lm.mirror, temperature=lm.temperature if calibrated else 1.0)
        probs, spread = out["mean"], out["std"]
    else:
        probs, spread = predict_tensor(lm, images_u8, tta=tta, calibrated=calibrated)["probs"], None
    return {"probs": probs, "spread": spread, "entropy": predictive_entropy(probs, lm.task)}


def describe_prediction(lm: LoadedModel, probs: np.ndarray) -> dict[str, Any]:
    """The label, its probability and a plain-words confidence for one image's probabilities."""
    from core.uncertainty import confidence_level, describe_confidence, normalized_entropy

    probs = np.asarray(probs, dtype=np.float64).reshape(1, -1)
    k = int(probs.argmax())
    ent = float(normalized_entropy(probs, lm.task)[0])
    level = confidence_level(float(probs[0, k]), ent)
    return {"label": lm.class_names[k], "index": k, "probability": float(probs[0, k]), "level": level,
            "entropy_norm": ent,
            "sentence": describe_confidence(probs[0], lm.class_names, lm.task)}
