"""Auto's search space, sized to the data and to the machine, with no dataset-specific code.

:func:`size_space` looks at the dataset (images, side, channels, classes), at the machine
(CPU or GPU, cores, runs at once) and at the budget, times one training step of each
candidate architecture at each image size the dataset offers, and keeps the pairs that can
train a few epochs within a trial's share of the budget. The space is plain JSON (it is
stored in the experiment's plan, so the page shows what Auto chose from); :func:`distributions`
turns it into Optuna distributions and :func:`config_for` a trial's values into a run's
settings. The default recipe is one point of the space: Auto's first trial. Auto sizes the space
for its search, the first part of its budget (:data:`core.experiments.auto.FINAL_SHARE`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

#: Architectures Auto may try, cheapest first (the measurement stops when its time is spent).
CANDIDATES = ("medvcnn", "bloodcnn", "cnn_lstm", "quadsnet", "arn_cnn", "resnet18", "mobilenet_v2",
              "densenet121", "resnet50")
DEFAULT_MODEL = "medvcnn"  # the Train page's default architecture, with the default recipe
MIN_EPOCHS, MAX_EPOCHS = 2, 40
TRIALS_PER_SLOT = 4  # a trial's share of the budget is budget / 4 (pruning then makes room for more)
_STEP_BATCH = 64


def describe_data(dataset: str, data_dir: str | None = None) -> dict[str, Any]:
    """Images per split, side, channels, classes, task and the image sizes the dataset offers."""
    from core.data import MEDMNIST_SIZES, list_medmnist, load_dataset, medmnist_filename
    from core.paths import data_dir as default_data_dir

    ds = load_dataset(dataset, size=28, data_dir=data_dir)
    spec = str(dataset).strip().lower()
    if spec in list_medmnist():
        root = default_data_dir(data_dir)
        sizes = [s for s in MEDMNIST_SIZES if (root / medmnist_filename(spec, s)).exists()] or [28]
    else:
        side = _native_side(Path(str(dataset)).expanduser())
        sizes = [s for s in MEDMNIST_SIZES if s <= max(28, side or 28)]
    return {"train": int(ds.images["train"].shape[0]), "val": int(ds.images["val"].shape[0]) if "val" in ds.images else 0,
            "channels": ds.channels, "classes": len(ds.class_names), "task": ds.task, "sizes": sizes}


def _native_side(path: Path) -> int | None:
    """The shorter side of the first image of a folder (None for a zip or npz: use 28)."""
    if not path.is_dir():
        return None
    from PIL import Image

    from core.data import IMAGE_EXTENSIONS

    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                try:
                    with Image.open(os.path.join(dirpath, f)) as im:
                        return min(im.size)
                except OSError:
                    continue
    return None


def step_seconds(model: str, channels: int, classes: int, size: int, device: str = "cpu",
                 deadline: float | None = None) -> float:
    """Seconds per image of one training step (forward, backward, update) at batch 64, timed.

    Args:
        deadline: a ``time.monotonic()`` after which no further step is timed (the first
            step's time, allocation included, is then the figure: an overestimate).
    """
    import torch

    from core.models import create_model

    net = create_model(model, channels, classes, size).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(_STEP_BATCH, channels, size, size, device=device)
    y = torch.randint(0, classes, (_STEP_BATCH,), device=device)
    times = []
    for _ in range(3):  # the first step pays for allocation and kernel choice: not counted
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if deadline is not None and time.monotonic() > deadline:
            break
    return min(times[1:] or times) / _STEP_BATCH


def size_space(dataset: str, minutes: float, *, slots: int = 1, data_dir: str | None = None,
               image_sizes: Sequence[int] | None = None, candidates: Sequence[str] = CANDIDATES) -> dict[str, Any]:
    """The search space for ``dataset`` in ``minutes`` on this machine (see the module docstring).

    Args:
        dataset: the data.
        minutes: Auto's wall-clock budget.
        slots: runs trained at once.
        data_dir: where MedMNIST files are.
        image_sizes: restrict the sizes (else all the dataset offers, within the demo's).
        candidates: architectures to consider.

    Returns:
        ``{"data", "machine", "trial_seconds", "arches": [{"arch": "model@size", "model",
        "image_size", "epoch_seconds", "epochs"}], "params": {name: distribution spec},
        "default": {name: value}}``.
    """
    from core.limits import current_limits
    from core.train.device import pick_device

    data = describe_data(dataset, data_dir)
    device = pick_device("auto").type
    sizes = [s for s in data["sizes"] if image_sizes is None or s in image_sizes] or [data["sizes"][0]]
    allowed = current_limits().image_sizes
    sizes = [s for s in sizes if allowed is None or s in allowed] or [28]
    budget_s = float(minutes) * 60
    trial_s = budget_s / TRIALS_PER_SLOT
    import core.models  # noqa: F401  (torch's import is not part of the measuring time)

    measure_until = time.monotonic() + max(3.0, 0.04 * budget_s)
    arches, measured = [], []
    for size in sorted(sizes):
        for model in candidates:
            if time.monotonic() > measure_until:
                break  # a busy machine or a large budget's slow models: what is measured is the space
            try:
                per_image = step_seconds(model, data["channels"], data["classes"], size, device, measure_until)
            except Exception:  # noqa: BLE001 - a model that cannot take this input is left out
                continue
            # Training plus the validation pass and loader overhead (about a quarter more).
            epoch_s = per_image * data["train"] * 1.25 * max(1, slots if device == "cpu" else 1)
            epochs = int(min(MAX_EPOCHS, math.floor(0.85 * trial_s / max(epoch_s, 1e-6))))
            entry = {"arch": f"{model}@{size}", "model": model, "image_size": size,
                     "epoch_seconds": round(epoch_s, 4), "epochs": epochs}
            measured.append(entry)
            if epochs >= MIN_EPOCHS:
                arches.append(entry)
    if not arches:  # even the cheapest cannot train two epochs in a trial: one epoch of the cheapest
        cheapest = min(measured, key=lambda a: a["epoch_seconds"], default=None)
        model, size = (cheapest["model"], cheapest["image_size"]) if cheapest else (candidates[0], min(sizes))
        arches.append({"arch": f"{model}@{size}", "model": model, "image_size": size,
                       "epoch_seconds": cheapest["epoch_seconds"] if cheapest else None, "epochs": 1})
    default_arch = next((a["arch"] for a in arches if a["model"] == DEFAULT_MODEL), arches[0]["arch"])
    from core.train import RECIPES

    d = RECIPES["default"].values
    params = {
        "arch": {"type": "categorical", "choices": [a["arch"] for a in arches]},
        "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
        "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "augment": {"type": "categorical", "choices": ["flipshift", "light", "none"]},
        "label_smoothing": {"type": "categorical", "choices": [0.0, 0.05, 0.1]},
        "ema": {"type": "categorical", "choices": [0.0, 0.99]},
        "schedule": {"type": "categorical", "choices": ["onecycle", "cosine"]},
    }
    default = {"arch": default_arch, "lr": d["lr"], "weight_decay": d["weight_decay"], "augment": d["augment"],
               "label_smoothing": d["label_smoothing"], "ema": d["ema"], "schedule": d["schedule"]}
    return {"data": data, "machine": {"device": device, "cores": os.cpu_count(), "slots": slots},
            "trial_seconds": trial_s, "arches": arches, "params": params, "default": default}


def distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    """The space's parameters as Optuna distributions."""
    import optuna

    out = {}
    for name, spec in space["params"].items():
        if spec["type"] == "categorical":
            out[name] = optuna.distributions.CategoricalDistribution(list(spec["choices"]))
        else:
            out[name] = optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec.get("log", False))
    return out


def config_for(space: Mapping[str, Any], values: Mapping[str, Any], dataset: str, *, seed: int,
               remaining_s: float, data_dir: str | None = None, epochs: int | None = None,
               limit_s: float | None = None):
    """A trial's run settings: the default recipe with the trial's values, its epochs sized to the
    architecture's measured epoch time, and a time limit that ends it before the budget does.

    Args:
        epochs, limit_s: set both for Auto's final run (an epoch cap and its time limit);
            None sizes them for a search trial.

    Returns:
        A validated :class:`core.train.TrainConfig`.
    """
    from core.runs.submit import run_request

    arch = next(a for a in space["arches"] if a["arch"] == values["arch"])
    if limit_s is None:
        limit_s = min(float(space["trial_seconds"]) * 1.5, remaining_s)
    limit_s = max(6.0, limit_s)
    return run_request(dataset, arch["model"], "default", image_size=arch["image_size"],
                       epochs=arch["epochs"] if epochs is None else int(epochs),
                       lr=float(values["lr"]), weight_decay=float(values["weight_decay"]), augment=values["augment"],
                       label_smoothing=float(values["label_smoothing"]), ema=float(values["ema"]),
                       schedule=values["schedule"], seed=seed, max_minutes=round(limit_s / 60, 3),
                       data_dir=data_dir).config
