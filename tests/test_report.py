"""core.report: what a run's or a comparison's report says, in HTML and PDF.

The per-class numbers are checked against scikit-learn on the run's own saved predictions,
visitors' names against HTML injection, and the files against their formats.
"""

from __future__ import annotations

import re
from html import escape

import numpy as np
import pytest
from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support

from core.errors import StudioError
from core.evaluate import evaluate_predictions
from core.per_class import per_class_metrics
from core.report import Gallery, Paragraph, Picture, Table, cell_text, comparison_report, render, run_report
from core.runs import RunStore
from helpers_runs import CLASS_NAMES, make_run, write_dataset_folder

RUN_NAME = '<script>alert("run")</script> & co'
CLASSES = ["<b>benign</b>", "malignant & <i>other</i>", "normal"]


def fabricated(store: RunStore, name: str = RUN_NAME, classes=CLASSES, dataset: str = "bloodmnist",
               seed: int = 0, drop_class: int | None = None):
    """A completed run (no network) with saved test predictions, eval.json and three epochs."""
    rng = np.random.default_rng(seed)
    n, k = 150, len(classes)
    labels = rng.integers(0, k, n)
    if drop_class is not None:
        labels[labels == drop_class] = (drop_class + 1) % k
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[labels] * (rng.random(n) < 0.7)[:, None]
    if drop_class is not None:
        logits[:, drop_class] -= 10  # never predicted either
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    config = {"dataset": dataset, "model": "resnet18", "image_size": 28, "epochs": 3, "seed": seed,
              "data_dir": "/secret/server/medmnist", "lr": 0.001}
    run = store.create_run({"dataset": dataset, "model": "resnet18", "image_size": 28, "seed": seed,
                            "config": config}, name=name)
    ev = evaluate_predictions(scores, labels, "multi-class", classes)
    run.write_eval({"val": ev, "test": ev})
    run.write_predictions(test_scores=scores.astype(np.float32), test_labels=labels,
                          test_logits=logits.astype(np.float32))
    for e in (1, 2, 3):
        run.append_metrics({"kind": "epoch", "epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e,
                            "train_acc": 0.5 + e / 10, "val_acc": 0.45 + e / 10, "val_auc": 0.6 + e / 20})
    store.update_meta(run.id, status="completed", epochs_done=3, train_seconds=12.0, temperature=1.4,
                      task="multi-class", class_names=classes, test_acc=ev["acc"], test_auc=ev["auc"])
    return run, scores, labels


def per_class_table(report) -> Table:
    return next(b for b in report.blocks if isinstance(b, Table) and b.headers[:3] == ["class", "images",
                                                                                        "sensitivity"])


# ---------------------------------------------------------------------------- per-class numbers
def test_per_class_numbers_match_sklearn_on_the_runs_predictions(tmp_path):
    run, scores, labels = fabricated(RunStore(tmp_path / "runs"))
    report = run_report(run, examples=0)
    table = per_class_table(report)
    pred = scores.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, pred, labels=[0, 1, 2],
                                                                     zero_division=0)
    mcm = multilabel_confusion_matrix(labels, pred, labels=[0, 1, 2])
    html = render(report, "html").decode()
    for j, row in enumerate(table.rows):
        (tn, fp), (fn, tp) = mcm[j]
        expected = [CLASSES[j], int(support[j]), tp / (tp + fn), tn / (tn + fp), precision[j], recall[j], f1[j],
                    (tp + tn) / len(labels)]
        assert row[0] == expected[0] and row[1] == expected[1]
        assert row[2:] == pytest.approx(expected[2:], abs=1e-12)
        cells = "".join(f'<td class="num">{cell_text(v)}</td>' for v in row[1:])
        assert f"<tr><td>{escape(CLASSES[j])}</td>{cells}</tr>" in html, "the table in the file shows the same"


def test_a_class_with_no_images_has_no_sensitivity(tmp_path):
    run, _, labels = fabricated(RunStore(tmp_path / "runs"), drop_class=2)
    assert 2 not in labels
    row = per_class_table(run_report(run, examples=0)).rows[2]
    assert row[1] == 0 and row[2] is None and row[3] == pytest.approx(1.0)
    assert cell_text(row[2]) == "n/a"


def test_multi_label_rates_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (80, 4))
    p = np.where(rng.random((80, 4)) < 0.75, y, 1 - y)
    ev = evaluate_predictions(p * 0.8 + 0.1, y, "multi-label", list("abcd"))
    rows = per_class_metrics(ev["confusion_matrix"], ev["class_names"], "multi-label")
    for j, (m, row) in enumerate(zip(multilabel_confusion_matrix(y, p), rows)):
        (tn, fp), (fn, tp) = m
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (tp, fp, fn, tn)
        assert row["specificity"] == pytest.approx(tn / (tn + fp)) and row["accuracy"] == pytest.approx((tp + tn) / 80)


def test_a_confusion_matrix_that_does_not_fit_is_refused():
    with pytest.raises(StudioError, match="must be 3 x 3"):
        per_class_metrics([[1, 2], [3, 4]], ["a", "b", "c"], "multi-class")


# ---------------------------------------------------------------------------- content and escaping
def test_html_report_escapes_names_and_is_self_contained(tmp_path):
    run, _, _ = fabricated(RunStore(tmp_path / "runs"))
    html = render(run_report(run, examples=0), "html").decode()
    assert "<script" not in html and "<b>" not in html and "<i>" not in html
    assert escape(RUN_NAME) in html and escape(CLASSES[1]) in html
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in html and "http://" not in html and "https://" not in html, "nothing fetched from elsewhere"
    for section in ("Settings", "Learning curves", "Scores", "Per class", "Confusion matrix", "Calibration"):
        assert f">{section}" in html
    assert "with the temperature 1.40 fitted on the validation split" in html
    assert "/secret/server" not in html, "no server paths in a report"


def test_pdf_report_is_a_pdf(tmp_path):
    run, _, _ = fabricated(RunStore(tmp_path / "runs"))
    pdf = render(run_report(run, examples=0), "pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type /Page\b", pdf)) >= 2
    assert b"/Subtype /Image" in pdf, "the curves and matrices are in it"


def test_unknown_format_is_refused(tmp_path):
    run, _, _ = fabricated(RunStore(tmp_path / "runs"))
    with pytest.raises(StudioError, match="unknown report format 'docx'"):
        render(run_report(run, examples=0), "docx")


def test_an_unfinished_run_says_so(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create_run({"dataset": "breastmnist", "model": "medvcnn", "image_size": 28,
                            "config": {"dataset": "breastmnist"}}, name="queued one")
    report = run_report(run)
    texts = [b.text for b in report.blocks if isinstance(b, Paragraph)]
    assert "This run has no evaluation yet: it has not finished." in texts
    assert render(report, "pdf").startswith(b"%PDF") and b"queued one" in render(report, "html")


def test_comparison_report_tables_every_run_and_warns_across_datasets(tmp_path):
    store = RunStore(tmp_path / "runs")
    a, _, _ = fabricated(store, name="run a", seed=1)
    b, _, _ = fabricated(store, name="run b", dataset="/srv/data/uploads/abc/scans-1234", seed=2)
    report = comparison_report([a, b], examples=0)
    summary = report.blocks[1]
    assert summary.headers[:5] == ["run", "dataset", "model", "size (px)", "ACC"]
    assert [r[0] for r in summary.rows] == ["run a", "run b"]
    assert [r[1] for r in summary.rows] == ["bloodmnist", "scans-1234 (own images)"]
    assert [r[4] for r in summary.rows] == [a.eval()["test"]["acc"], b.eval()["test"]["acc"]]
    assert any(isinstance(x, Paragraph) and x.tone == "warning" and "different datasets" in x.text
               for x in report.blocks)
    assert sum(isinstance(x, Picture) for x in report.blocks[:6]) == 2, "validation accuracy and loss overlaid"
    html = render(report, "html").decode()
    assert "/srv/data" not in html and html.count(">Per class<") == 2
    with pytest.raises(StudioError, match="at least one run"):
        comparison_report([])


# ---------------------------------------------------------------------------- explanations
def test_example_explanations_use_the_runs_model_on_one_image_per_class(tmp_path):
    data = write_dataset_folder(tmp_path / "squares")
    run = make_run(tmp_path / "runs", "medvcnn", dataset=str(data), steps=30)
    report = run_report(run)
    gallery = next(b for b in report.blocks if isinstance(b, Gallery))
    assert len(gallery.items) == 2
    captions = [c for _, c in gallery.items]
    assert [c.split("; ")[0].split("true ")[1] for c in captions] == list(CLASS_NAMES)
    assert all(png.startswith(b"\x89PNG") for png, _ in gallery.items)
    # the answer in each caption is the model's own, as Classify would give it
    import torch

    from core.train.evaluation import load_run_dataset
    from core.inference import load_run_model, predict_tensor

    lm, ds = load_run_model(run), load_run_dataset(run)
    for caption in captions:
        index = int(re.match(r"test image (\d+):", caption).group(1))
        probs = predict_tensor(lm, ds.images["test"][index:index + 1])["probs"][0]
        assert f"answer {CLASS_NAMES[int(np.argmax(probs))]} ({probs.max():.0%})" in caption
    assert torch.is_tensor(ds.images["test"])


def test_explanations_are_left_out_with_a_reason_when_the_dataset_is_gone(tmp_path):
    run = make_run(tmp_path / "runs", "medvcnn", dataset=None, steps=2)
    notes = [b.text for b in run_report(run).blocks if isinstance(b, Paragraph) and b.text.startswith("No heatmaps")]
    assert notes == ["No heatmaps: the test images of synthetic-squares could not be loaded where this report was "
                     "made, or no longer fit the model."]


def test_explanation_failure_does_not_leak_the_servers_folders(tmp_path):
    gone = tmp_path / "server-only" / "scans-1234"
    run = make_run(tmp_path / "runs", "medvcnn", dataset=str(gone), steps=2)
    html = render(run_report(run), "html").decode()
    assert "No heatmaps: the test images of scans-1234 (own images) could not be loaded" in html
    assert str(gone.parent) not in html


def test_a_multi_label_run_gets_counts_per_label_and_no_square_matrix(tmp_path):
    store = RunStore(tmp_path / "runs")
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (90, 3))
    scores = np.clip(y * 0.6 + rng.random((90, 3)) * 0.5, 0, 1)
    run = store.create_run({"dataset": "chestmnist", "model": "resnet18", "image_size": 28,
                            "config": {"dataset": "chestmnist"}}, name="chest")
    ev = evaluate_predictions(scores, y, "multi-label", ["effusion", "mass", "nodule"])
    run.write_eval({"test": ev})
    run.write_predictions(test_scores=scores.astype(np.float32), test_labels=y)
    report = run_report(run, examples=0)
    counts = next(b for b in report.blocks if isinstance(b, Table) and b.headers[0] == "label")
    mcm = multilabel_confusion_matrix(y, (scores > 0.5).astype(int))
    assert [r[1:] for r in counts.rows] == [[m[1, 1], m[0, 1], m[1, 0], m[0, 0]] for m in mcm]
    html = render(report, "html").decode()
    assert ">Confusion matrix<" not in html and ">Per class<" in html
    assert render(report, "pdf").startswith(b"%PDF")
