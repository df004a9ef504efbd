"""Compare's uncertainty, calibration and side-by-side explanation sections, and Classify's
Monte-Carlo dropout, driven headless with AppTest. Values on the page are checked against
what core computes from the same files.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from core.runs import RunStore
from helpers_runs import make_run, square_images, write_dataset_folder
from test_pages import (  # noqa: F401 - fixtures and helpers shared with the other page tests
    _stop_job_runner,
    no_failure,
    open_page,
    populated,
    shared_medmnist,
    texts,
    trained_runs,
)


def frame_with(at, column: str):
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a '{column}' column"
    return found[0]


def pick_runs(at, run_ids: list[str]) -> None:
    next(m for m in at.multiselect if m.label == "Runs to compare").set_value(run_ids).run()


def real_run(store: RunStore):
    return store.get(next(r["run_id"] for r in store.list_runs() if r["name"] == "real medvcnn"))


def twin(store: RunStore, src, name: str):
    """A second finished run with the same files as ``src`` (same weights, another id)."""
    new = store.create_run(src.params(), name=name)
    for path in (src.eval_path, src.predictions_path, src.metrics_path):
        shutil.copy(path, new.dir / path.name)
    shutil.copytree(src.checkpoint_dir, new.checkpoint_dir, dirs_exist_ok=True)
    meta = src.meta()
    store.update_meta(new.id, **{k: meta[k] for k in ("status", "epochs_done", "best_epoch", "train_seconds",
                                                      "params_count", "task", "class_names", "temperature",
                                                      "test_acc", "test_auc", "latency_ms") if k in meta})
    store.refresh_from_disk(new.id)
    return new


# ---------------------------------------------------------------------------- compare: uncertainty
def test_compare_per_class_uncertainty_equals_core_on_predictions_npz(populated):
    from core.uncertainty import per_class_uncertainty

    real = real_run(populated)
    # A fabricated run gets saved predictions too (scores only, like a classical baseline).
    fake = next(r for r in populated.list_runs() if r["name"] == "fake resnet18")
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.05, 0.95, 120)
    populated.get(fake["run_id"]).write_predictions(test_scores=np.stack([1 - p1, p1], 1).astype(np.float32),
                                                   test_labels=rng.integers(0, 2, 120))
    at = open_page("compare")
    no_failure(at)
    table = frame_with(at, "Mean entropy (nats)")
    for row in populated.list_runs():
        preds = populated.get(row["run_id"]).predictions()
        shown = table[table["Run"].str.startswith(row["name"])]
        if preds is None:
            assert shown.empty, row["name"]
            continue
        names = json.loads(populated.get(row["run_id"]).eval_path.read_text())["test"]["class_names"]
        want = per_class_uncertainty(preds["test_scores"], preds["test_labels"], names, "binary")
        assert shown["Class"].tolist() == names
        assert shown["Test images"].tolist() == [c["n"] for c in want]
        np.testing.assert_allclose(shown["Mean entropy (nats)"], [c["mean_entropy"] for c in want], rtol=1e-12)
        np.testing.assert_allclose(shown["Mean top probability"], [c["mean_max_prob"] for c in want], rtol=1e-12)
        np.testing.assert_allclose(shown["Spread of top probability (std)"], [c["std_max_prob"] for c in want],
                                   rtol=1e-12)
    assert set(table["Run"].map(lambda s: s.split(" (")[0].split(" ·")[0])) == {"real medvcnn", "fake resnet18"}
    assert "fake medvcnn" in texts(at.caption), "a run without predictions is named"
    assert real.predictions() is not None


# ---------------------------------------------------------------------------- compare: calibration
def test_compare_reliability_before_and_after_temperature(populated):
    from core.calibration import apply_temperature, reliability_diagram

    real = real_run(populated)
    at = open_page("compare")
    no_failure(at)
    table = frame_with(at, "ECE with temperature")
    row = table[table["Run"].str.startswith("real medvcnn")].iloc[0]
    preds = real.predictions()
    t = real.meta()["temperature"]
    labels = preds["test_labels"]
    assert row["Temperature"] == pytest.approx(t)
    assert row["ECE as trained"] == pytest.approx(reliability_diagram(preds["test_scores"], labels)["ece"])
    assert row["ECE as trained"] == pytest.approx(real.eval()["test"]["ece"], abs=1e-6)  # what eval.json says
    after = reliability_diagram(apply_temperature(preds["test_logits"], t, "binary"), labels)["ece"]
    assert row["ECE with temperature"] == pytest.approx(after)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    diagrams = [s for s in specs if any(tr.get("name") == "perfectly calibrated" for tr in s["data"])]
    assert len(diagrams) == 1, "one reliability diagram: only the real run saved predictions"
    names = [tr["name"] for tr in diagrams[0]["data"]]
    assert f"as trained (ECE {row['ECE as trained']:.3f})" in names
    assert f"temperature {t:.2f} (ECE {after:.3f})" in names


# ---------------------------------------------------------------------------- compare: explanations
def _expected_answers(run, images_u8: np.ndarray) -> list[str]:
    from core.inference import load_run_model, predict_tensor

    lm = load_run_model(run)
    probs = predict_tensor(lm, torch.from_numpy(images_u8))["probs"]
    return [f"{lm.class_names[int(p.argmax())]} · {p.max():.0%}" for p in probs]


def test_compare_explains_the_same_test_images_with_each_run(populated, shared_medmnist):
    from studio.side_by_side import N_IMAGES, sample_indices

    real = real_run(populated)
    other = twin(populated, real, "twin medvcnn")
    at = open_page("compare")
    pick_runs(at, [real.id, other.id])
    no_failure(at)
    assert "Explanation method" in [s.label for s in at.selectbox]
    with np.load(shared_medmnist / "breastmnist.npz") as npz:
        test_images, test_labels = npz["test_images"], npz["test_labels"].ravel()
    names = real.eval()["test"]["class_names"]

    def check(draw: int) -> None:
        idx = sample_indices(len(test_images), draw)
        images = [e for e in at.image if e.captions]
        assert len(images) == N_IMAGES * 3, "one row per image: the image, then each run's heatmap"
        want = _expected_answers(real, test_images[idx][:, None])
        for row, i in enumerate(idx):
            first, *overlays = images[3 * row:3 * row + 3]
            assert first.captions[0] == f"test image {i} · true: {names[test_labels[i]]}"
            for o in overlays:  # both runs have the same weights, so the same answer
                assert o.captions[0].endswith(want[row]), (o.captions[0], want[row])
                assert o.captions[0][0] in "✓✗"

    check(0)
    next(b for b in at.button if b.label == "Draw other images").click().run()
    no_failure(at)
    check(1)
    at.selectbox(key="explain_method").set_value("saliency").run()
    no_failure(at)
    check(1)


def test_compare_explanations_only_within_one_dataset(populated, tmp_path):
    real = real_run(populated)
    folder = write_dataset_folder(tmp_path / "squares")
    squares = make_run(populated.root, "medvcnn", dataset=str(folder), steps=4)
    populated.refresh_from_disk(squares.id)
    at = open_page("compare")
    pick_runs(at, [real.id, squares.id])
    no_failure(at)
    assert "Only runs of the same dataset" in texts(at.info)
    group = at.selectbox(key="explain_group")
    assert len(group.options) == 2
    group.select_index(next(i for i, o in enumerate(group.options) if "squares" in o)).run()
    no_failure(at)
    captions = [e.captions[0] for e in at.image if e.captions]
    assert sum(c.startswith("test image") for c in captions) == 4
    assert all(("absent" in c or "present" in c) for c in captions if not c.startswith("test image"))


# ---------------------------------------------------------------------------- classify: MC dropout
def _pngs(tmp_path, n: int) -> list[tuple[str, bytes, str]]:
    images, _, _ = square_images(n, seed=5)
    files = []
    for i in range(n):
        path = tmp_path / f"sq{i}.png"
        Image.fromarray(images[i, 0].numpy()).save(path)
        files.append((path.name, path.read_bytes(), "image/png"))
    return files


def test_classify_monte_carlo_dropout_shows_the_spread(tmp_path, monkeypatch):
    from core.inference import load_image_tensor, load_run_model, preprocess
    from core.inference import mc_dropout_predict

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    run = make_run(root, "bloodcnn", steps=6)  # BloodCNN has dropout layers
    at = open_page("classify")
    no_failure(at)
    mc = at.checkbox(key="mc_on")
    assert mc.label == "Monte-Carlo dropout (N passes)" and not mc.disabled
    mc.check().run()
    at.number_input(key="mc_passes").set_value(12)
    files = _pngs(tmp_path, 2)
    at.file_uploader[0].set_value(files).run()
    no_failure(at)

    lm = load_run_model(run)
    batch = torch.stack([load_image_tensor(lm, data, name) for name, data, _ in files])
    want = mc_dropout_predict(lm.model, preprocess(lm, batch), n_passes=12, seed=0, task=lm.task)
    assert want["std"].max() > 0
    table = at.dataframe[0].value  # all images: probabilities and their spread
    assert table["file"].tolist() == [f[0] for f in files]
    for k, name in enumerate(lm.class_names):
        np.testing.assert_allclose(table[f"p({name})"], want["mean"][:, k], atol=1e-4)
        np.testing.assert_allclose(table[f"spread({name})"], want["std"][:, k], atol=1e-4)
    per_image = [d.value for d in at.dataframe if "spread (std)" in d.value.columns]
    assert len(per_image) == 2
    for j, frame in enumerate(per_image):
        assert frame["class"].tolist() == lm.class_names
        np.testing.assert_allclose(frame["mean probability"], want["mean"][j], atol=1e-4)
        np.testing.assert_allclose(frame["spread (std)"], want["std"][j], atol=1e-4)
    assert "12 passes" in texts(at.caption)
    assert "entropy (nats)" in table.columns


def test_classify_monte_carlo_dropout_is_off_for_a_model_without_dropout(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    make_run(root, "medvcnn", steps=2)  # MedvCNN has no dropout
    at = open_page("classify")
    no_failure(at)
    assert at.checkbox(key="mc_on").disabled
    assert "no dropout layers" in texts(at.caption)
    at.file_uploader[0].set_value(_pngs(tmp_path, 1)).run()
    no_failure(at)
    assert not [d for d in at.dataframe if "spread (std)" in d.value.columns]
    assert "predictive entropy" in texts(at.caption)
    rules = texts(at.markdown)
    assert "at least 90%" in rules and "less than 60%" in rules, "the confidence levels are explained"


def test_compare_explanations_say_what_to_do_when_the_dataset_is_missing(populated):
    lost = make_run(populated.root, "medvcnn", dataset=None, steps=2)  # "synthetic-squares": not on disk
    populated.refresh_from_disk(lost.id)
    at = open_page("compare")
    pick_runs(at, [lost.id])
    assert not at.exception
    errors = texts(at.error)
    assert "synthetic-squares" in errors and "Traceback" not in errors
    assert "Accuracy against size and training time" in [h.value for h in at.subheader], "the page goes on"


def test_classify_applies_the_stored_temperature_and_mirror_images(tmp_path, monkeypatch):
    from core.inference import load_image_tensor, load_run_model, predict_tensor

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    run = make_run(root, "medvcnn", steps=6)  # its checkpoint carries temperature 1.25
    files = _pngs(tmp_path, 3)
    lm = load_run_model(run)
    assert lm.temperature == 1.25
    batch = torch.stack([load_image_tensor(lm, data, name) for name, data, _ in files])
    at = open_page("classify")
    at.file_uploader[0].set_value(files).run()
    for tta, calibrated in ((False, False), (False, True), (True, False), (True, True)):
        boxes = [c for c in at.checkbox if c.key != "mc_on"]
        boxes[0].set_value(tta)
        boxes[1].set_value(calibrated)
        at.run()
        no_failure(at)
        want = predict_tensor(lm, batch, tta=tta, calibrated=calibrated)["probs"]
        table = at.dataframe[0].value
        np.testing.assert_allclose(table["p(present)"], want[:, 1], atol=1e-4)
        if calibrated:
            plain = predict_tensor(lm, batch, tta=tta)["probs"]
            assert np.abs(plain[:, 1] - want[:, 1]).max() > 1e-3  # the temperature changed them
