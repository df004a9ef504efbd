"""Ensembles: the module averages probabilities (and re-normalises each member's input), an
ensemble run is an ordinary completed run whose eval.json is the average of its members'
predictions, and Classify, ``predict``, explanations, export and Compare use it like any run.
Runs that cannot be averaged are refused with a reason, and nothing is left behind."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import StudioError
from core.evaluate import evaluate_predictions
from core.experiments.ensemble import best_ensemble_size, create_ensemble_run
from core.inference import load_run_model, predict_tensor
from core.models.ensemble import Ensemble, Member, build_ensemble
from core.runs import RunStore
from tests.helpers_runs import make_run, square_images, write_dataset_folder


class _Fixed(nn.Module):
    """Returns fixed logits per image (and records the input it saw)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.logits.expand(x.shape[0], -1)


def test_logits_are_those_of_the_averaged_probabilities():
    a, b = _Fixed([2.0, 0.0, -1.0]), _Fixed([0.0, 1.0, 0.5])
    one = torch.ones(1)
    ens = Ensemble([Member(a, one, 0 * one), Member(b, one, 0 * one)], multi_label=False)
    out = ens(torch.zeros(2, 1, 4, 4))
    expected = (torch.softmax(a.logits, 0) + torch.softmax(b.logits, 0)) / 2
    assert torch.allclose(torch.softmax(out, dim=1)[0], expected, atol=1e-6)
    labels = Ensemble([Member(a, one, 0 * one), Member(b, one, 0 * one)], multi_label=True)
    probs = torch.sigmoid(labels(torch.zeros(1, 1, 4, 4)))[0]
    assert torch.allclose(probs, (torch.sigmoid(a.logits) + torch.sigmoid(b.logits)) / 2, atol=1e-6)


def test_each_member_sees_its_own_normalisation():
    net = _Fixed([0.0, 0.0])
    args = {"in_channels": 3, "members": [{"model_name": "x", "model_args": {}, "mean": [0.485, 0.456, 0.406],
                                           "std": [0.229, 0.224, 0.225], "gradcam_layer": None}]}
    ens = build_ensemble(args, "multi-class", [0.5] * 3, [0.5] * 3, nets=[net])
    raw = torch.rand(1, 3, 2, 2)
    ens((raw - 0.5) / 0.5)  # normalised as the ensemble's own input
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    assert torch.allclose(net.seen, (raw - mean) / std, atol=1e-5)


def test_ensemble_size_is_chosen_on_validation():
    labels = np.array([0, 1, 0, 1])
    strong = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.45, 0.55]])  # ranks 3 of 4 pairs right
    helper = np.array([[0.6, 0.4], [0.4, 0.6], [0.9, 0.1], [0.1, 0.9]])   # fixes the third image
    assert best_ensemble_size([strong, helper], labels, "multi-class", "val_acc")[0] == 2
    noise = np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.8], [0.8, 0.2]])
    k, score = best_ensemble_size([helper, noise], labels, "multi-class", "val_acc")
    assert (k, score) == (1, 1.0)


def _softmax_like(rng, labels, k, signal):
    """(N, k) probabilities that favour each true class by ``signal`` (plus noise)."""
    logits = rng.normal(size=(len(labels), k)) + signal * np.eye(k)[labels]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_fast_auc_and_acc_match_the_reported_metrics():
    from core.experiments.ensemble import _acc, _auc, _label_matrix

    rng = np.random.default_rng(3)
    for task, k in (("binary", 2), ("multi-class", 4)):
        labels = rng.integers(0, k, 50)
        p = _softmax_like(rng, labels, k, 1.0)
        ev = evaluate_predictions(p, labels, task)
        y = _label_matrix(labels, task, k)
        assert _auc(p, y, task) == pytest.approx(ev["auc"], abs=1e-12)
        assert _acc(p, y, task) == pytest.approx(ev["acc"], abs=1e-12)
    assert _auc(p[:3], _label_matrix(np.array([0, 0, 1]), "multi-class", 4), "multi-class") is None  # classes absent


def test_a_steadier_average_within_the_noise_is_preferred():
    from core.experiments.ensemble import ensemble_within_noise

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    # One strong run and two weaker ones: on these 60 images the strong one alone scores best
    # (AUC 0.9921), the average of all three a little lower (0.9887), within the noise.
    runs = [_softmax_like(rng, labels, 2, 2.5)] + [_softmax_like(rng, labels, 2, 0.8) for _ in range(2)]
    scores = [evaluate_predictions(np.mean(runs[:k], 0), labels, "binary")["auc"] for k in (1, 2, 3)]
    assert best_ensemble_size(runs, labels, "binary", "val_auc") == (1, pytest.approx(scores[0]))
    k, score, tolerance = ensemble_within_noise(runs, labels, "binary", "val_auc")
    assert k == 3 and score == pytest.approx(scores[2]) == pytest.approx(0.98869, abs=1e-5)
    assert 0 < scores[0] - score <= tolerance < 0.05
    assert ensemble_within_noise(runs, labels, "binary", "val_auc") == (k, score, tolerance)  # seeded
    # A second run that ranks everything backwards costs far more than the noise: kept alone.
    k, score, tolerance = ensemble_within_noise([runs[0], 1 - runs[0]], labels, "binary", "val_auc")
    assert (k, tolerance) == (1, 0.0) and score == pytest.approx(scores[0])


def test_an_average_within_the_auc_noise_but_below_on_accuracy_is_not_kept():
    from core.experiments.ensemble import ensemble_within_noise, paired_margin

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    runs = []
    for _ in range(2):
        logits = rng.normal(0, 1, (600, 3))
        logits[np.arange(600), labels] += 2
        runs.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    pair = (runs[0] + runs[1]) / 2
    # A third run that agrees with the pair but for two things: it is sure of the right class on
    # 100 images the pair already gets right (a little more AUC) and picks the runner-up on the
    # 15 closest calls (accuracy lost): the saturated-AUC case of bloodmnist.
    order = np.argsort(pair, axis=1)
    right = np.flatnonzero(order[:, -1] == labels)
    closest = right[np.argsort((np.sort(pair, 1)[:, -1] - np.sort(pair, 1)[:, -2])[right])]
    third = pair.copy()
    third[closest[:15]] = np.eye(3)[order[closest[:15], -2]]
    third[closest[15:115]] = np.eye(3)[labels[closest[15:115]]]
    runs.append(third)
    ev = [evaluate_predictions(np.mean(runs[:k], 0), labels, "multi-class") for k in (1, 2, 3)]
    assert best_ensemble_size(runs, labels, "multi-class", "val_auc")[0] == 3  # the best AUC, by a hair
    assert 0 < ev[2]["auc"] - ev[1]["auc"] < 0.001 and ev[1]["acc"] - ev[2]["acc"] == pytest.approx(0.025)
    acc_gap, acc_noise = paired_margin(np.mean(runs[:2], 0), np.mean(runs, 0), labels, "multi-class", "val_acc")
    assert acc_gap == pytest.approx(0.025) and acc_gap > acc_noise > 0
    k, score, tolerance = ensemble_within_noise(runs, labels, "multi-class", "val_auc")
    assert k == 2 and score == pytest.approx(ev[1]["auc"])
    assert ev[2]["auc"] - score <= tolerance == pytest.approx(0.000765, abs=1e-5)


def test_select_best_keeps_an_ensemble_within_its_tolerance():
    from core.experiments import select_best

    single = {"run_id": "b", "status": "completed", "val_auc": 0.95, "val_acc": 0.9, "trial": {"number": 1}}
    ens = {"run_id": "e", "status": "completed", "val_auc": 0.94, "val_acc": 0.9,
           "trial": {"number": 2, "ensemble": True, "tolerance": 0.02}}
    assert select_best([single, ens])["run_id"] == "e"
    assert select_best([single, {**ens, "trial": {**ens["trial"], "tolerance": 0.005}}])["run_id"] == "b"
    assert select_best([single, {**ens, "trial": {"number": 2, "ensemble": True}}])["run_id"] == "b"  # none recorded
    # A tolerance on a run that is not an ensemble counts for nothing.
    assert select_best([single, {**ens, "trial": {"number": 2, "tolerance": 0.5}}])["run_id"] == "b"


@pytest.fixture(scope="module")
def ensemble_store(tmp_path_factory):
    """Two trained runs of one dataset folder, a classical-looking and a foreign run, and their
    ensemble (module-scoped: the tests below only read it)."""
    root = tmp_path_factory.mktemp("ens")
    folder = write_dataset_folder(root / "squares")
    # Other weights, the same split (as Auto's final runs).
    runs = [make_run(root / "runs", dataset=str(folder), steps=30, seed=s, split_seed=0) for s in (0, 1)]
    store = RunStore(root / "runs")
    ens = create_ensemble_run(store, [r.id for r in runs], name="two squares")
    return store, runs, ens, folder


def _folder_test(folder):
    from core.data import load_dataset

    return load_dataset(str(folder), size=28, seed=0)


def test_ensemble_run_is_evaluated_as_the_mean_of_its_members(ensemble_store):
    store, runs, ens, folder = ensemble_store
    meta, params = ens.meta(), ens.params()
    assert meta["status"] == "completed" and params["model"] == "ensemble"
    assert params["ensemble"]["members"] == [r.id for r in runs]
    data = _folder_test(folder)
    members = [load_run_model(r) for r in runs]
    probs = np.mean([predict_tensor(lm, data.images["test"])["probs"] for lm in members], axis=0)
    expected = evaluate_predictions(probs, data.labels["test"].numpy(), "binary", ["absent", "present"])
    assert ens.eval()["test"]["acc"] == pytest.approx(expected["acc"])
    assert ens.eval()["test"]["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert np.allclose(ens.predictions()["test_scores"], probs, atol=1e-5)
    assert meta["params_count"] == sum(sum(p.numel() for p in lm.model.parameters()) for lm in members)
    assert store.list_runs()[0]["model"] in ("ensemble", "medvcnn")  # indexed beside its members
    assert any(r["run_id"] == ens.id and r["model"] == "ensemble" for r in store.list_runs())


def test_classify_predict_explain_and_export_use_the_ensemble(ensemble_store, tmp_path):
    from core.cli import main
    from core.explain import explain
    from core.export import export_run
    from core.inference import preprocess

    store, runs, ens, folder = ensemble_store
    lm = load_run_model(ens)
    assert lm.model_name == "ensemble" and lm.class_names == ["absent", "present"]
    images, labels, _ = square_images(8, seed=7)
    out = predict_tensor(lm, images)
    members = [predict_tensor(load_run_model(r), images)["probs"] for r in runs]
    assert np.allclose(out["probs"], np.mean(members, axis=0), atol=1e-5)
    # Grad-CAM of an ensemble: the sum of its members' maps, a (28, 28) map in [0, 1].
    heat = explain(lm, preprocess(lm, images[:1])[0], method="gradcam")
    assert heat.shape == (28, 28) and heat.max() == pytest.approx(1.0)
    first = explain(lm, preprocess(lm, images[:1])[0], method="gradcam", layer=lm.gradcam_layer)
    assert not np.allclose(heat, first), "more than the first member's map"
    png = tmp_path / "case.png"
    from PIL import Image

    Image.fromarray(images[1, 0].numpy()).save(png)
    assert main(["predict", ens.id, str(png), "--runs-dir", str(store.root), "--out", str(tmp_path / "pred")]) == 0
    with open(tmp_path / "pred" / "predictions.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["label"] == lm.class_names[int(out["pred"][1])]
    result = export_run(ens, "onnx", tmp_path / "export")
    assert result["max_abs_diff"] <= result["tolerance"]
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "An ensemble: the average of the probabilities of 2 runs" in card and runs[1].id in card


def test_runs_that_cannot_be_averaged_are_refused_and_nothing_is_left(ensemble_store, tmp_path):
    store, runs, ens, folder = ensemble_store
    before = {r["run_id"] for r in store.list_runs()}
    with pytest.raises(StudioError, match="2 to 8 different runs; 1 given"):
        create_ensemble_run(store, [runs[0].id, runs[0].id])
    with pytest.raises(StudioError, match="is an ensemble already"):
        create_ensemble_run(store, [ens.id, runs[0].id])
    other = make_run(store.root, steps=5, seed=3)  # records another dataset
    with pytest.raises(StudioError, match="another dataset"):
        create_ensemble_run(store, [runs[0].id, other.id])
    store.update_meta(other.id, status="failed")
    with pytest.raises(StudioError, match="only completed runs can be averaged"):
        create_ensemble_run(store, [runs[0].id, other.id])
    assert {r["run_id"] for r in store.list_runs()} == before | {other.id}
    store.delete(other.id)


def test_cli_ensemble_prints_members_and_scores(ensemble_store, capsys):
    from core.cli import main

    store, runs, ens, folder = ensemble_store
    assert main(["ensemble", runs[1].id, runs[0].id, "--name", "again", "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    new_id = out.split()[1].rstrip(":")
    made = store.get(new_id)
    assert f"the average of 2 runs ({runs[1].id}, {runs[0].id})" in out
    acc = made.eval()["test"]["acc"]
    assert f"test: ACC {acc:.4f}" in out and math.isfinite(acc)
    assert made.meta()["name"] == "again"
    with pytest.raises(StudioError, match="ensemble of 2 runs with no training of its own"):
        from core.experiments.plan import plan_seeds

        plan_seeds(store, new_id, 2)
    store.delete(new_id)


def test_a_failed_evaluation_leaves_no_half_made_run(ensemble_store, monkeypatch):
    import core.train.evaluation as evaluation

    store, runs, ens, folder = ensemble_store
    before = {r["run_id"] for r in store.list_runs()}

    def gone(*_a, **_k):
        raise StudioError("the dataset folder is gone")

    monkeypatch.setattr(evaluation, "load_run_dataset", gone)
    with pytest.raises(StudioError, match="the dataset folder is gone"):
        create_ensemble_run(store, [r.id for r in runs])
    assert {r["run_id"] for r in store.list_runs()} == before


def test_classify_and_compare_pages_show_the_ensemble(ensemble_store, monkeypatch, tmp_path):
    from PIL import Image

    from tests.test_pages import no_failure, open_page

    store, runs, ens, folder = ensemble_store
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(store.root))
    at = open_page("classify")
    no_failure(at)
    box = at.selectbox[0]
    assert any("two squares" in o for o in box.options)
    box.set_value(ens.id).run()
    images, _, _ = square_images(4, seed=9)
    png = tmp_path / "case.png"
    Image.fromarray(images[0, 0].numpy()).save(png)
    at.file_uploader[0].set_value(("case.png", png.read_bytes(), "image/png")).run()
    no_failure(at)
    shown = [m.value.removeprefix("### ") for m in at.markdown if m.value.startswith("### ")]
    lm = load_run_model(ens)
    assert shown == [lm.class_names[int(predict_tensor(lm, images[:1])["pred"][0])]]
    at = open_page("compare")
    no_failure(at)
    frames = [d.value for d in at.dataframe]
    assert any("ensemble" in f.astype(str).to_numpy().ravel().tolist() for f in frames)


def test_runs_of_a_folder_split_with_other_seeds_are_refused(tmp_path):
    folder = write_dataset_folder(tmp_path / "squares")
    a = make_run(tmp_path / "runs", dataset=str(folder), steps=5, seed=0)
    b = make_run(tmp_path / "runs", dataset=str(folder), steps=5, seed=1)  # the seed draws its split
    c = make_run(tmp_path / "runs", dataset=str(folder), steps=5, seed=2, split_seed=0)  # one split with a
    store = RunStore(tmp_path / "runs")
    with pytest.raises(StudioError, match=r"different seeds \(0 and 1\)"):
        create_ensemble_run(store, [a.id, b.id])
    assert create_ensemble_run(store, [a.id, c.id]).meta()["status"] == "completed"


def test_auto_adds_the_ensemble_that_helps_on_validation(tmp_path):
    from core.experiments import ExperimentBook, create_experiment, plan_auto
    from core.experiments.auto_ensemble import add_ensemble
    from core.experiments.members import member_rows

    folder = write_dataset_folder(tmp_path / "squares")
    runs = [make_run(tmp_path / "runs", dataset=str(folder), steps=s, seed=i, split_seed=0)
            for i, s in enumerate((30, 20, 10))]
    store = RunStore(tmp_path / "runs")
    book = ExperimentBook(store)
    exp = create_experiment(store, plan_auto(str(folder), minutes=1))
    exp = book.update(exp.id, add_members=[r.id for r in runs])
    rows = member_rows(store, exp)
    ranked = [r["run_id"] for r in sorted(rows, key=lambda r: (-r["val_auc"], -r["val_acc"], r["created"]))]
    # Saved validation probabilities built so that the best two together rank every pair
    # right (AUC 1.0) while the best alone gets 0.75 and all three 0.875: on 40 images (the
    # pattern 10 times) 0.125 is more than the noise, so the third does not join.
    labels = np.tile([0, 1, 0, 1], 10)
    p1 = {ranked[0]: [0.1, 0.8, 0.6, 0.55], ranked[1]: [0.4, 0.6, 0.1, 0.9], ranked[2]: [0.9, 0.1, 0.8, 0.2]}
    for run_id, p in p1.items():
        p = np.tile(p, 10)
        store.get(run_id).write_predictions(val_scores=np.stack([1 - p, p], 1), val_labels=labels,
                                            test_scores=np.stack([1 - p, p], 1), test_labels=labels)
    added = add_ensemble(store, exp, rows, "val_auc")
    assert len(added) == 1
    ens = store.get(added[0])
    params = ens.params()
    assert params["ensemble"]["members"] == ranked[:2]
    assert params["experiment"] == exp.id and params["experiment_trial"]["ensemble"] is True
    assert ens.meta()["status"] == "completed" and ens.eval()["val"]["n"] == 16
    # Once there, it is not added again; with the helper's predictions gone no average helps.
    exp = book.update(exp.id, add_members=added)
    assert add_ensemble(store, exp, member_rows(store, exp), "val_auc") == []
    store.delete(added[0])
    helper = np.tile(p1[ranked[2]], 10)
    store.get(ranked[1]).write_predictions(val_scores=np.stack([1 - helper, helper], 1), val_labels=labels)
    assert add_ensemble(store, exp, member_rows(store, exp), "val_auc") == []


def test_the_leaderboard_puts_the_kept_ensemble_first(monkeypatch):
    from types import SimpleNamespace

    from core.experiments import summary

    rows = [{"run_id": "b", "status": "completed", "val_auc": 0.95, "val_acc": 0.9, "trial": {"number": 1}},
            {"run_id": "c", "status": "completed", "val_auc": 0.93, "val_acc": 0.9, "trial": {"number": 0}},
            {"run_id": "e", "status": "completed", "val_auc": 0.94, "val_acc": 0.9,
             "trial": {"number": 2, "ensemble": True, "tolerance": 0.02}}]
    monkeypatch.setattr(summary, "member_rows", lambda store, exp: [dict(r) for r in rows])
    board = summary.leaderboard(None, SimpleNamespace(metric="val_auc"), live=False)
    assert [(r["rank"], r["run_id"]) for r in board] == [(1, "e"), (2, "b"), (3, "c")]
