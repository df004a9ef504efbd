"""Compare's "same images, every model" grid: a seeded draw of test images, each run's
prediction and heatmap for them, cached so that redrawing the page costs nothing.

Test images are ``st.cache_data`` (plain arrays, copied per session); models come from
:mod:`studio.run_models` (``st.cache_resource``, one per run and checkpoint version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from studio import ui

#: Test images per draw: enough to see a pattern, few enough to explain quickly on a CPU.
N_IMAGES = 4

#: Display side of the images; 28 px images are scaled up (nearest neighbour, so pixels stay
#: visible) before the heatmap is blended in.
DISPLAY_SIDE = 224


def groups(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """Runs with a best checkpoint, grouped by (dataset, image size): only runs of one group
    can be shown the same images."""
    from core.runs import Run

    out: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        if r.get("dataset") and r.get("image_size") and Run(Path(r["dir"])).best_checkpoint.is_file():
            out.setdefault((r["dataset"], int(r["image_size"])), []).append(r)
    return out


def sample_indices(n_total: int, draw: int, n: int = N_IMAGES) -> list[int]:
    """``n`` distinct test indices, the same for the same ``draw`` (sorted)."""
    rng = np.random.default_rng(int(draw))
    return sorted(int(i) for i in rng.choice(n_total, size=min(n, n_total), replace=False))


@st.cache_data(show_spinner=False, max_entries=16)
def test_sample(run_dir: str, params_stamp: str, data_root: str, draw: int, n: int = N_IMAGES) -> dict[str, Any]:
    """A seeded draw of the test split of a run's dataset, loaded as the run loaded it.

    ``params_stamp`` and ``data_root`` (the default data directory, used when the run does
    not name one) are part of the cache key only.

    Returns:
        ``{"indices", "images": uint8 (n, C, S, S), "truth": one label text per image,
        "dataset"}``.
    """
    from core.train.evaluation import load_run_dataset
    from core.runs import Run

    data = load_run_dataset(Run(Path(run_dir)))
    split = "test" if "test" in data.images else "val"
    labels = data.labels[split]
    idx = sample_indices(int(labels.shape[0]), draw, n)
    images = np.stack([data.images[split][i].numpy() for i in idx]) if idx else np.zeros((0, 1, 1, 1), np.uint8)
    truth = []
    for i in idx:
        y = labels[i]
        if data.task == "multi-label":
            present = [name for name, v in zip(data.class_names, y.tolist()) if v > 0.5]
            truth.append(", ".join(present) or "none")
        else:
            truth.append(str(data.class_names[int(y)]))
    return {"indices": idx, "images": images, "truth": truth, "dataset": data.name, "split": split,
            "task": data.task}


@st.cache_data(show_spinner=False, max_entries=64)
def explained(run_dir: str, ckpt_stamp: str, images: np.ndarray, method: str) -> list[dict[str, Any]]:
    """One run's prediction and heatmap for each image.

    Args:
        run_dir: the run's directory.
        ckpt_stamp: its best checkpoint's stamp (part of the cache key).
        images: uint8 (n, C, S, S) at the run's size.
        method: an explanation method from :func:`core.explain.list_methods`.

    Returns:
        Per image ``{"label", "probability", "index", "heat": (S, S) float32 in [0, 1]}``.
    """
    import torch

    from core.explain import explain
    from core.inference import predict_tensor, preprocess
    from core.runs import Run
    from studio.run_models import shared_model

    shared = shared_model(Run(Path(run_dir)))
    lm = shared.lm
    batch = torch.from_numpy(np.ascontiguousarray(images))
    out = []
    with shared.lock:
        probs = predict_tensor(lm, batch)["probs"]
        x = preprocess(lm, batch)
        for i, p in enumerate(probs):
            k = int(np.argmax(p))
            heat = explain(lm, x[i], target=k, method=method)
            out.append({"label": lm.class_names[k], "probability": float(p[k]), "index": k, "heat": heat})
    return out


def display_image(image_u8: np.ndarray):
    """uint8 (C, S, S) -> an RGB PIL image scaled up to :data:`DISPLAY_SIDE` for the page."""
    from PIL import Image

    a = np.asarray(image_u8)
    a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    img = Image.fromarray(np.ascontiguousarray(a)).convert("RGB")
    if img.width < DISPLAY_SIDE:
        img = img.resize((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.NEAREST)
    return img


def params_stamp(run) -> str:
    """Cache key part that changes when a run's params.json does."""
    return ui.file_stamp(run.params_path)
