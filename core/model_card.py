"""A model card (Mitchell et al., 2019) for a trained run, as Markdown.

Everything in it is read from the run's own files (params.json, meta.json, eval.json and
the best checkpoint), so the card cannot drift from the model it describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_SPLIT_NAMES = {"val": "validation", "test": "test", "train": "train"}


def render_model_card(run, export: dict[str, Any] | None = None) -> str:
    """The model card of a run.

    Args:
        run: a :class:`core.runs.Run` with a best checkpoint.
        export: details of an export to record (``format``, ``file``, ``max_abs_diff``,
            ``n_checked``, ``check_source``, ``opset``), as :func:`core.export.export_run`
            passes them; None leaves the section out.

    Returns:
        The card as Markdown: identity, data and classes, preprocessing, metrics per split,
        per-class test metrics, the training recipe, intended use and limitations.

    Raises:
        StudioError: the run has no best checkpoint (a classical baseline, or unfinished).
    """
    params = run.params()
    meta = run.meta()
    evaluation = run.eval() or {}
    ckpt = run.load_checkpoint("best")
    args = ckpt.get("model_args", {})
    model_name = ckpt.get("model_name", params.get("model", "?"))
    channels = int(args.get("in_channels", 0))
    size = int(args.get("image_size", params.get("image_size", 0)))
    classes = [str(c) for c in ckpt.get("class_names", [])]
    task = ckpt.get("task", meta.get("task", "?"))
    mean = [float(v) for v in ckpt.get("mean", [])][:channels]
    std = [float(v) for v in ckpt.get("std", [])][:channels]
    temperature = float(ckpt.get("temperature", 1.0) or 1.0)
    config = ckpt.get("config") or params.get("config") or {}
    info = _model_info(model_name, channels, len(classes), size)
    n_params = meta.get("params_count") or (info.params if info else _count(ckpt.get("state_dict", {})))
    dataset = _dataset_label(params.get("dataset") or config.get("dataset"))
    title = meta.get("name") or run.id

    lines: list[str] = [f"# Model card: {_md(title)}", ""]
    lines += [
        f"- **Run id:** `{run.id}`",
        f"- **Model:** {model_name}" + (f" ({_md(info.paper)}; {_md(info.family)})" if info else ""),
        f"- **Parameters:** {int(n_params):,}" if n_params else "- **Parameters:** unknown",
        f"- **Dataset:** {_md(dataset)}",
        f"- **Task:** {task}",
        f"- **Status:** {meta.get('status', 'unknown')}"
        + (f", finished {meta['finished']}" if meta.get("finished") else ""),
    ]
    if info:
        lines += ["", _md(info.description)]
    members = (args.get("members") or []) if model_name == "ensemble" else []
    if members:
        lines += ["", f"An ensemble: the average of the probabilities of {len(members)} runs, one network in the "
                      "exported file (its logits are the log of the averaged probabilities):", ""]
        lines += [f"- `{_md(str(m.get('run_id')))}`: {_md(str(m.get('model_name')))}" for m in members]

    lines += ["", "## Classes", ""]
    lines += ["| index | class |", "|---:|---|"]
    lines += [f"| {i} | {_md(c)} |" for i, c in enumerate(classes)]

    kind = "grayscale (1 channel)" if channels == 1 else f"RGB ({channels} channels)"
    lines += [
        "", "## Input and preprocessing", "",
        f"1. Decode the image as {kind}; 16-bit scans are stretched from their own minimum..maximum to 0..255.",
        f"2. Resize it to {size} x {size} pixels, bilinear, stretching to a square (no crop).",
        "3. Scale to [0, 1]: `x = pixels / 255`.",
        f"4. Normalise per channel: `x = (x - mean) / std` with mean = {_vec(mean)} and std = {_vec(std)}.",
        f"5. Feed float32 in NCHW layout, shape (N, {channels}, {size}, {size}).",
        "",
        "The output is (N, {k}) logits. ".format(k=len(classes))
        + ("Apply a sigmoid to each label for its probability." if task == "multi-label"
           else "Apply a softmax over the classes for probabilities."),
        f"For calibrated probabilities divide the logits by the fitted temperature T = {temperature:.4f} first.",
    ]

    lines += ["", "## Evaluation", ""]
    splits = [s for s in ("val", "test") if isinstance(evaluation.get(s), dict)]
    if splits:
        lines += ["| split | n | ACC | AUC | macro precision | macro recall | macro F1 | kappa | log loss | ECE |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in splits:
            e = evaluation[s]
            macro = e.get("macro") or {}
            lines.append(
                f"| {_SPLIT_NAMES.get(s, s)} | {e.get('n', '')} | {_num(e.get('acc'))} | {_num(e.get('auc'))} | "
                f"{_num(macro.get('precision'))} | {_num(macro.get('recall'))} | {_num(macro.get('f1'))} | "
                f"{_num(e.get('kappa'))} | {_num(e.get('log_loss'))} | {_num(e.get('ece'))} |"
            )
        test = evaluation.get("test") or evaluation.get(splits[-1])
        per_class = test.get("per_class") or []
        if per_class:
            which = "test" if "test" in evaluation else _SPLIT_NAMES.get(splits[-1], splits[-1])
            lines += ["", f"Per class ({which} set, one class against the rest):", "",
                      "| class | support | precision | recall | F1 | sensitivity | specificity | AUC |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for row in per_class:
                lines.append(
                    f"| {_md(str(row.get('class', '')))} | {row.get('support', '')} | {_num(row.get('precision'))} | "
                    f"{_num(row.get('recall'))} | {_num(row.get('f1'))} | {_num(row.get('sensitivity'))} | "
                    f"{_num(row.get('specificity'))} | {_num(row.get('auc'))} |"
                )
        notes = [n for s in splits for n in (evaluation[s].get("notes") or [])]
        if notes:
            lines += [""] + [f"- Note: {_md(n)}" for n in dict.fromkeys(notes)]
    else:
        lines.append("This run has no evaluation yet; run `python -m core eval RUN_ID`.")

    lines += ["", "## Training recipe", ""]
    facts = {
        "epochs done": meta.get("epochs_done"),
        "best epoch": meta.get("best_epoch"),
        "training time (s)": meta.get("train_seconds"),
        "device": meta.get("device"),
        "stop reason": meta.get("stop_reason"),
    }
    rows = [(k, v) for k, v in facts.items() if v is not None]
    rows += [(k, _dataset_label(v) if k == "dataset" else v) for k, v in config.items()
             if k != "data_dir" and v not in (None, {}, [])]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {_md(str(k))} | {_md(_plain(v))} |" for k, v in rows]
    versions = params.get("versions")
    if isinstance(versions, dict) and versions:
        lines += ["", "Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]

    lines += [
        "", "## Intended use", "",
        "Research and teaching: comparing architectures and training recipes on medical image benchmarks, "
        "and showing how such classifiers behave and fail.",
        "",
        "**This is not a medical device.** It has not been validated clinically or approved by any regulator, "
        "and it must not be used to diagnose, treat or triage patients.",
        "",
        "## Limitations", "",
        f"- It only knows the {len(classes)} classes above, and always answers with one of them"
        + (" (or a set of them)" if task == "multi-label" else "") + ", even for an image of something else.",
        f"- Only images like the training set ({_md(dataset)}: same kind of scan or photo, acquisition, "
        f"{'grayscale' if channels == 1 else 'colour'}, {size} px after resizing) give meaningful answers; "
        "other scanners, hospitals, populations or image types can silently lower its accuracy.",
        "- The metrics above come from one held-out split of one dataset; they are estimates with "
        "sampling error, not guarantees for new data.",
        "- Probabilities can be over- or under-confident; the calibrated ones (temperature above) are better "
        "on data like the validation set, not elsewhere.",
        "- Explanation heatmaps show where the model looked, not why a finding is present.",
    ]

    if export:
        lines += ["", "## Export", "",
                  f"- **File:** `{export.get('file', '')}` ({export.get('format', '')}"
                  + (f", ONNX opset {export['opset']}" if export.get("opset") else "") + ")",
                  "- **Input name:** `input`, **output name:** `logits`, batch size dynamic"
                  if export.get("format") == "onnx" else "- **Load with:** `torch.jit.load(\"model.pt\")`",
                  f"- **Checked:** largest |exported - PyTorch| logit difference {export.get('max_abs_diff', 0):.2e} "
                  f"on {_md(str(export.get('check_source', '')))}" + _limit(export) + "."]
    return "\n".join(lines) + "\n"


def _limit(export: dict[str, Any]) -> str:
    """How the parity limit was set: 1e-4, scaled by the largest logit when that is above 1."""
    limit = export.get("tolerance")
    if limit is None:
        return ""
    largest = float(export.get("max_abs_logit") or 0.0)
    if largest <= 1.0:
        return f" (limit {limit:.0e})"
    return (f" (limit {limit:.2e} = 1e-4 x the largest |logit| {largest:.3g}, because float32 round-off "
            "grows with the size of the numbers)")


def _model_info(name: str, channels: int, num_classes: int, size: int):
    try:
        from core.models import model_info

        return model_info(name, channels, max(num_classes, 1), size)
    except Exception:  # an unregistered or renamed model: the card goes on without the facts
        return None


def _count(state_dict: dict) -> int:
    return int(sum(v.numel() for k, v in state_dict.items()
                   if hasattr(v, "numel") and v.is_floating_point() and "running_" not in k))


def _dataset_label(spec: Any) -> str:
    if not spec:
        return "unknown"
    text = str(spec)
    # A folder or zip path names the dataset by its last component; the rest is this machine's.
    return Path(text).name if ("/" in text or "\\" in text) else text


def _num(v: Any) -> str:
    if v is None:
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if f != f else f"{f:.4f}"


def _vec(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_plain(x)}" for k, x in v.items())
    return str(v)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell or line (no pipes, no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")
