"""A one-click report of a run or of a comparison of runs, as self-contained HTML or as PDF.

A report is built in two steps: :func:`run_report` / :func:`comparison_report` read the runs'
own files (params.json, meta.json, metrics.jsonl, eval.json, predictions.npz and the best
checkpoint) into a :class:`Report`, a list of plain blocks (headings, paragraphs, tables,
pictures); :func:`render` turns it into HTML (:mod:`core.report_html`, pictures inlined as
data URLs, every name escaped) or PDF (:mod:`core.report_pdf`, fpdf2). Both renderers read
the same blocks, so the two files cannot say different things.

Content: the settings, the learning curves, the scores per split, per-class sensitivity,
specificity, precision, recall, F1 and accuracy (:mod:`core.per_class`), the confusion
matrix, calibration, and example explanations (Grad-CAM on one test image per class).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from core.errors import StudioError
from core.report_blocks import Gallery, Heading, Paragraph, Picture, Report, Table, cell_text
from core.report_examples import EXAMPLES, explain_examples

FORMATS = ("html", "pdf")
MIME_TYPES = {"html": "text/html", "pdf": "application/pdf"}

#: Settings left out of the report: where files were on the machine that trained the run
#: is nobody's business in a shared report (and is no use elsewhere).
_PRIVATE = ("data_dir", "extra")

_SPLITS = {"val": "validation", "test": "test", "train": "training"}


# --------------------------------------------------------------------------- building
def run_report(run, data_dir: str | None = None, examples: int = EXAMPLES) -> Report:
    """The report of one run.

    Args:
        run: a :class:`core.runs.Run` (finished runs say the most; an unfinished one gets
            what it has).
        data_dir: where MedMNIST files are, for the example explanations.
        examples: how many example explanations at most (0 leaves them out).

    Returns:
        The :class:`Report`.
    """
    name = _run_name(run)
    report = Report(f"Report: {name}", f"Run {run.id} · made {_now()}")
    report.blocks += _run_blocks(run, data_dir, examples)
    report.blocks += _intended_use()
    return report


def comparison_report(runs: Sequence, data_dir: str | None = None, examples: int = EXAMPLES) -> Report:
    """The report of several runs side by side, then each run in full.

    Args:
        runs: the :class:`core.runs.Run` objects to compare (at least one).
        data_dir: where MedMNIST files are, for the example explanations.
        examples: example explanations per run at most.

    Returns:
        The :class:`Report`.

    Raises:
        StudioError: no runs given.
    """
    from core.report_figures import overlaid_curves_png

    runs = list(runs)
    if not runs:
        raise StudioError("pick at least one run to put in the report.")
    report = Report(f"Comparison of {len(runs)} run{'s' if len(runs) != 1 else ''}",
                    f"Made {_now()} · scores on the test split")
    rows = []
    for run in runs:
        test = (run.eval() or {}).get("test") or {}
        meta, params = run.meta() or {}, run.params() or {}
        rows.append([_run_name(run), _dataset(params.get("dataset")), params.get("model", "?"),
                     params.get("image_size"), test.get("acc"), test.get("auc"), (test.get("macro") or {}).get("f1"),
                     test.get("ece"), meta.get("params_count"), _seconds(meta.get("train_seconds"))])
    report.blocks.append(Heading("Scores side by side", 2))
    report.blocks.append(Table(["run", "dataset", "model", "size (px)", "ACC", "AUC", "macro F1", "ECE",
                                "params", "training time"], rows,
                               "ACC accuracy, AUC area under the ROC curve, F1 the balance of precision and "
                               "recall, ECE calibration error (lower is better).",
                               (3, 2.2, 1.8, 1, 1, 1, 1, 1, 1.5, 1.5)))
    if len({r[1] for r in rows}) > 1:
        report.blocks.append(Paragraph("These runs were trained on different datasets, so their scores are not "
                                       "directly comparable.", "warning"))
    curves = {_run_name(r): r.metrics(kind="epoch") for r in runs}
    for metric, label in (("val_acc", "validation accuracy"), ("val_loss", "validation loss")):
        png = overlaid_curves_png(curves, metric, label)
        if png:
            report.blocks.append(Picture(png, f"{label.capitalize()} per epoch, one line per run.", 0.8))
    for run in runs:
        report.blocks.append(Heading(_run_name(run), 2))
        report.blocks += _run_blocks(run, data_dir, examples)
    report.blocks += _intended_use()
    return report


def render(report: Report, fmt: str) -> bytes:
    """The report as a file.

    Args:
        report: from :func:`run_report` or :func:`comparison_report`.
        fmt: ``"html"`` (self-contained, UTF-8) or ``"pdf"``.

    Returns:
        The file's bytes.

    Raises:
        StudioError: an unknown format.
    """
    if fmt == "html":
        from core.report_html import render_html

        return render_html(report).encode("utf-8")
    if fmt == "pdf":
        from core.report_pdf import render_pdf

        return render_pdf(report)
    raise StudioError(f"unknown report format '{fmt}'; choose one of: {', '.join(FORMATS)}.")


def report_file_name(title: str, fmt: str) -> str:
    """A safe file name for a report: ``report-<title slug>.<fmt>``."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", title).strip("-_")[:60] or "report"
    return f"{slug.lower()}.{fmt}"


# --------------------------------------------------------------------------- one run
def _run_blocks(run, data_dir, examples: int) -> list:
    from core.report_figures import learning_curves_png

    sub = 3  # under the report's (or, in a comparison, the run's) level-2 heading
    params, meta = run.params() or {}, run.meta() or {}
    evaluation = run.eval() or {}
    blocks: list = []
    blocks.append(Heading("Settings", sub))
    blocks.append(Table(["setting", "value"], [["run id", run.id]] + _settings(params, meta)))

    blocks.append(Heading("Learning curves", sub))
    png = learning_curves_png(run.metrics(kind="epoch"))
    blocks.append(Picture(png, "Per epoch: training (solid) and validation (dashed).") if png
                  else Paragraph("No epoch was logged (a classical baseline, or a run that has not finished one).",
                                 "note"))

    blocks.append(Heading("Scores", sub))
    splits = [s for s in ("val", "test") if isinstance(evaluation.get(s), dict)]
    if not splits:
        blocks.append(Paragraph("This run has no evaluation yet: it has not finished.", "note"))
        return blocks
    blocks.append(Table(["split", "images", "ACC", "AUC", "macro F1", "kappa", "log loss", "ECE"], [
        [_SPLITS[s], evaluation[s].get("n"), evaluation[s].get("acc"), evaluation[s].get("auc"),
         (evaluation[s].get("macro") or {}).get("f1"), evaluation[s].get("kappa"), evaluation[s].get("log_loss"),
         evaluation[s].get("ece")] for s in splits]))
    split = "test" if "test" in splits else splits[-1]
    e = evaluation[split]
    blocks += _per_class_blocks(e, _SPLITS[split])
    if e.get("task") != "multi-label" and e.get("confusion_matrix"):
        from core.report_figures import confusion_png

        blocks.append(Heading("Confusion matrix", sub))
        blocks.append(Picture(confusion_png(e["confusion_matrix"], e["class_names"]),
                              f"{_SPLITS[split].capitalize()} split. Rows are the true class, columns what the model "
                              "answered; the diagonal holds the correct answers.", 0.42))
    blocks.append(Heading("Calibration: can the probabilities be trusted?", sub))
    blocks += _calibration_blocks(run, e, meta)
    notes = list(dict.fromkeys(e.get("notes") or []))
    blocks += [Paragraph(n, "note") for n in notes]
    if examples:
        blocks.append(Heading("Example explanations", sub))
        blocks += _explanation_blocks(run, data_dir, examples)
    return blocks


def _per_class_blocks(split_eval: dict, split_name: str) -> list:
    from core.per_class import per_class_from_eval

    rows = per_class_from_eval(split_eval)
    if not rows:
        return []
    table = Table(["class", "images", "sensitivity", "specificity", "precision", "recall", "F1", "accuracy"],
                  [[r["class"], r["support"], r["sensitivity"], r["specificity"], r["precision"], r["recall"],
                    r["f1"], r["accuracy"]] for r in rows],
                  f"{split_name.capitalize()} split, each class against all the others. Sensitivity (= recall): of "
                  "the images that have the class, the share found; specificity: of those that do not, the share "
                  "correctly left out; precision: of the answers for the class, the share right; accuracy: the "
                  "share of all images on which the model was right about this class. n/a: no image to count.")
    blocks: list = [Heading("Per class", 4), table]
    if split_eval.get("task") == "multi-label":
        blocks.append(Table(["label", "true positives", "false positives", "false negatives", "true negatives"],
                            [[r["class"], r["tp"], r["fp"], r["fn"], r["tn"]] for r in rows],
                            "Counts per label at the 0.5 threshold."))
    return blocks


def _calibration_blocks(run, split_eval: dict, meta: dict) -> list:
    from core.calibration import calibration_report
    from core.report_figures import reliability_png

    report = None
    try:
        preds = run.predictions()
    except StudioError:
        preds = None
    if preds and "test_scores" in preds and "test_labels" in preds:
        report = calibration_report(preds["test_scores"], preds["test_labels"], split_eval.get("task", "multi-class"),
                                    preds.get("test_logits"), meta.get("temperature"))
    elif split_eval.get("reliability"):
        report = {"before": split_eval["reliability"], "after": None, "temperature": None}
    if report is None:
        return [Paragraph("No calibration data: the run saved no predictions.", "note")]
    text = f"Expected calibration error (ECE) as trained: {report['before']['ece']:.3f}"
    if report.get("after"):
        text += (f"; with the temperature {report['temperature']:.2f} fitted on the validation split: "
                 f"{report['after']['ece']:.3f}")
    text += (". A calibrated model's points lie on the dotted diagonal: of the answers given with 80 % "
             "confidence, 80 % are right.")
    return [Picture(reliability_png(report), "", 0.45), Paragraph(text)]


def _explanation_blocks(run, data_dir, examples: int) -> list:
    if not run.best_checkpoint.is_file():
        return [Paragraph("No heatmaps: this run has no neural-network weights (a classical baseline, or "
                          "unfinished).", "note")]
    try:
        items = explain_examples(run, data_dir, examples)
    except (StudioError, OSError):
        # The dataset is not on this machine or no longer fits the model; its error would
        # name this server's folders, which a report that travels must not.
        params = run.params() or {}
        dataset = _dataset(params.get("dataset") or (params.get("config") or {}).get("dataset"))
        return [Paragraph(f"No heatmaps: the test images of {dataset} could not be loaded where this report was "
                          "made, or no longer fit the model.", "note")]
    return [Gallery(items, "Left: a test image; right: Grad-CAM of the model's own answer (red: what drove it). "
                           "Heatmaps show where the model looked, not why a finding is present.")]


def _settings(params: dict, meta: dict) -> list[list[Any]]:
    config = params.get("config") or {}
    rows: list[list[Any]] = [
        ["dataset", _dataset(params.get("dataset") or config.get("dataset"))],
        ["model", params.get("model") or config.get("model", "?")],
        ["image size (px)", params.get("image_size") or config.get("image_size")],
        ["status", meta.get("status", "unknown")],
    ]
    facts = [("epochs done", meta.get("epochs_done")), ("best epoch", meta.get("best_epoch")),
             ("training time", _seconds(meta.get("train_seconds"))), ("why it stopped", meta.get("stop_reason")),
             ("parameters", meta.get("params_count")), ("started", _when(meta.get("created"))),
             ("finished", _when(meta.get("finished"))), ("temperature", meta.get("temperature"))]
    rows += [[k, v] for k, v in facts if v not in (None, "")]
    for key, value in config.items():
        if key in _PRIVATE or key in ("dataset", "model", "image_size") or value in (None, "", {}, []):
            continue
        rows.append([key.replace("_", " "), _plain(value)])
    # Values as text: a settings table reads left to right, not as a column of figures.
    return [[k, cell_text(v)] for k, v in rows]


def _intended_use() -> list:
    return [Heading("Intended use", 2),
            Paragraph("Research and teaching. This is not a medical device: it has not been validated clinically or "
                      "approved by any regulator, and it must not be used to diagnose, treat or triage patients. "
                      "The scores come from one held-out split of one dataset; they are estimates, not guarantees "
                      "for new images.")]


def _run_name(run) -> str:
    return str((run.meta() or {}).get("name") or run.id)


def _dataset(spec: Any) -> str:
    if not spec:
        return "unknown"
    text = str(spec)
    # An imported folder is named by its last component; the rest is this machine's path.
    return f"{Path(text).name} (own images)" if ("/" in text or "\\" in text) else text


def _seconds(value: Any) -> str | None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    s = int(round(value))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_plain(v)) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return value


def _when(iso: Any) -> str | None:
    try:
        return datetime.fromisoformat(str(iso)).strftime("%d %b %Y %H:%M UTC") if iso else None
    except ValueError:
        return str(iso)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%d %b %Y %H:%M UTC")
