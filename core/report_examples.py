"""Example explanations for a report: Grad-CAM of a run's own answer on one test image per class."""

from __future__ import annotations

from core.errors import StudioError

#: Example explanations per run: one test image per class, up to this many.
EXAMPLES = 4


def explain_examples(run, data_dir=None, n: int = EXAMPLES) -> list[tuple[bytes, str]]:
    """Grad-CAM of the run's answer on one test image per class (the first of each), up to ``n``.

    Args:
        run: a :class:`core.runs.Run` with a best checkpoint.
        data_dir: where MedMNIST files are, if not where the run was trained from.
        n: how many images at most.

    Returns:
        ``(png of image and overlay side by side, caption)`` per image.

    Raises:
        StudioError: the model or its dataset cannot be loaded here.
    """
    import numpy as np
    import torch
    from PIL import Image

    from core.train.evaluation import load_run_dataset
    from core.explain import explain, overlay
    from core.inference import load_run_model, predict_tensor, preprocess
    from core.report_figures import image_pair_png

    lm = load_run_model(run, device="cpu")
    data = load_run_dataset(run, data_dir)
    split = "test" if "test" in data.images else "val"
    labels = data.labels[split]
    if data.task == "multi-label":
        picks = list(range(min(n, len(labels))))
    else:
        first = {}
        for i, y in enumerate(labels.tolist()):
            first.setdefault(int(y), i)
            if len(first) == data.num_classes:
                break
        picks = sorted(first.values())[:n]
    if not picks:
        return []
    images = torch.stack([data.images[split][i] for i in picks])
    if images.shape[1] != lm.channels or images.shape[-1] != lm.image_size:
        raise StudioError("the run's dataset no longer matches its model (channels or size).")
    probs = predict_tensor(lm, images)["probs"]
    x = preprocess(lm, images)
    out = []
    for j, i in enumerate(picks):
        k = int(np.argmax(probs[j]))
        heat = explain(lm, x[j], target=k, method="gradcam")
        a = images[j].numpy()
        shown = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
        base = Image.fromarray(np.ascontiguousarray(shown)).convert("RGB")
        if data.task == "multi-label":
            truth = ", ".join(c for c, v in zip(data.class_names, labels[i].tolist()) if v > 0.5) or "none"
        else:
            truth = data.class_names[int(labels[i])]
        out.append((image_pair_png(base, overlay(base, heat)),
                    f"{split} image {i}: true {truth}; answer {lm.class_names[k]} ({probs[j][k]:.0%})"))
    return out
