"""Classify answers with the run the person chose and says which; links open that run;
uploads unlike the training images are warned about in words; classical baselines are not
offered where they cannot work; explanations are on a readable scale and described.
(Issue 15, items 1, 2, 3, 7 and 14.)
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.runs import RunStore
from core.runs.worker import train_in_this_process as run_training  # records status and times
from core.train import build_params, make_config
from helpers_runs import make_run, square_images, write_dataset_folder
from test_pages import _stop_job_runner, no_failure, open_page, texts  # noqa: F401 - shared fixture/helpers


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    """A small image-folder dataset (train/val/test of 28 px noise, some with a bright square)."""
    return write_dataset_folder(tmp_path_factory.mktemp("squares") / "squares")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, squares) -> Path:
    """A runs directory with one run trained for real (1 epoch) by run_training."""
    root = tmp_path_factory.mktemp("trained") / "runs"
    store = RunStore(root)
    cfg = make_config(str(squares), "medvcnn", "default", image_size=28, epochs=1, batch_size=16, device="cpu",
                      schedule="none")
    run = store.create_run(build_params(cfg), name="squares medvcnn")
    run_training(run, store)
    assert run.meta()["status"] == "completed"
    return root


@pytest.fixture
def trained_store(trained, tmp_path, monkeypatch) -> RunStore:
    root = tmp_path / "runs-copy"
    shutil.copytree(trained, root)
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    return RunStore(root)


def named_run(root: Path, name: str, seed: int):
    run = make_run(root, "medvcnn", steps=2, seed=seed)
    RunStore(root).rename(run.id, name)
    return run


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def square_png(index: int = 1) -> bytes:
    images, _, _ = square_images(4, seed=5)
    return png(images[index, 0].numpy())


def page_links(at) -> dict[str, str]:
    """label -> query string of every st.page_link on the page."""
    return {e.proto.label: e.proto.query_string for e in at.get("page_link")}


def run_picker(at):
    return at.selectbox(key="classify_run")


# ---------------------------------------------------------------------------- item 1
def test_classify_keeps_the_chosen_run_when_another_finishes(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    x = named_run(root, "organ model X", seed=0)
    named_run(root, "breast model Y", seed=1)  # newer: first in the list
    at = open_page("classify")
    no_failure(at)
    assert run_picker(at).value != x.id, "the test picks a run that is not the default"
    run_picker(at).set_value(x.id).run()
    at.file_uploader[0].set_value([("liver.png", square_png(1), "image/png"),
                                   ("liver2.png", square_png(2), "image/png")]).run()
    no_failure(at)

    named_run(root, "just finished Z", seed=2)  # a run finishing elsewhere: new first option
    at.run()
    no_failure(at)
    assert len(run_picker(at).options) == 3
    assert run_picker(at).value == x.id, "the chosen run stays chosen"
    assert at.query_params.get("run") == x.id, "and the URL names it, so a refresh keeps it"
    captions = texts(at.caption)
    assert f"Answer from **organ model X** (run {x.id})" in captions
    assert "just finished Z" not in captions and "breast model Y" not in captions
    table = at.dataframe[0].value
    assert table["run"].tolist() == ["organ model X"] * 2
    assert table["run id"].tolist() == [x.id] * 2


def test_a_deleted_choice_is_replaced_with_a_warning(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    x = named_run(root, "old X", seed=0)
    y = named_run(root, "new Y", seed=1)
    at = open_page("classify")
    run_picker(at).set_value(x.id).run()
    RunStore(root).delete(x.id)
    at.run()
    assert not at.exception
    assert run_picker(at).value == y.id
    assert "no longer exists" in texts(at.warning), "the change of model is said, never silent"


# ---------------------------------------------------------------------------- item 2
def test_train_card_link_opens_that_run_on_classify(trained_store, tmp_path, monkeypatch, squares):
    data = tmp_path / "data"
    (data / "uploads" / "someone").mkdir(parents=True)
    shutil.copytree(squares, data / "uploads" / "someone" / "squares")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    trained_id = trained_store.list_runs()[0]["run_id"]
    named_run(trained_store.root, "a newer run", seed=3)  # the default pick would be this one
    from test_pages import APP, TIMEOUT
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["my_runs"] = [trained_id]
    at.run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    links = page_links(at)
    assert links["Classify images with it"] == f"run={trained_id}"
    assert links["Compare it"] == f"run={trained_id}"

    at.query_params["run"] = trained_id  # following the link
    at.switch_page("../pages/classify.py").run()
    no_failure(at)
    assert run_picker(at).value == trained_id


def test_home_and_compare_links_open_that_run(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    x = named_run(root, "run X", seed=0)
    y = named_run(root, "run Y", seed=1)
    at = open_page("home")
    no_failure(at)
    links = page_links(at)
    assert links["Classify with run X"] == f"run={x.id}"
    assert links["Compare run Y"] == f"run={y.id}"

    at.query_params["run"] = x.id
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    picked = next(m for m in at.multiselect if m.label == "Runs to compare")
    assert picked.value == [x.id], "Compare opens on that run alone"
    assert page_links(at)["Classify with run X"] == f"run={x.id}"

    at.query_params["run"] = x.id
    at.switch_page("../pages/classify.py").run()
    assert run_picker(at).value == x.id


def test_a_link_to_a_run_that_cannot_classify_says_why(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    y = named_run(root, "run Y", seed=1)
    store = RunStore(root)
    cfg = make_config("breastmnist", "random_forest", "default", image_size=28)
    forest = store.create_run(build_params(cfg), name="forest")
    store.update_meta(forest.id, status="completed", test_acc=0.7)
    for linked, words in (("20260101-000000-nothing-here-abcd", "no longer exists"),
                          (forest.id, "classical baseline")):
        from test_pages import APP, TIMEOUT
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        at.query_params["run"] = linked
        at.switch_page("../pages/classify.py").run()
        assert not at.exception
        assert words in texts(at.warning)
        assert run_picker(at).value == y.id, "the one model that can classify, chosen with a warning"
        assert len(run_picker(at).options) == 1, "the classical baseline is not offered"
    assert "Classical baselines (scikit-learn) are not listed" in texts(at.caption)


# ---------------------------------------------------------------------------- item 7
def test_classical_runs_are_not_offered_and_predict_says_why(tmp_path, monkeypatch, capsys):
    from core.cli import main

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    store = RunStore(root)
    cfg = make_config("breastmnist", "svm", "default", image_size=28)
    svm = store.create_run(build_params(cfg), name="svm baseline")
    store.update_meta(svm.id, status="completed", test_acc=0.7)
    at = open_page("classify")
    assert not at.exception
    assert "No finished model yet" in texts(at.info)
    assert "Classical baselines (scikit-learn) are not listed" in texts(at.caption)

    image = tmp_path / "x.png"
    image.write_bytes(square_png())
    code = main(["predict", svm.id, str(image), "--out", str(tmp_path / "out"), "--runs-dir", str(root)])
    assert code != 0
    err = capsys.readouterr().err
    assert "classical baseline (svm)" in err and "use a neural-network run" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- item 3
def test_training_records_the_training_images_statistics(trained_store, squares):
    from core.data import load_dataset
    from core.fit_check import training_image_stats

    run = trained_store.get(trained_store.list_runs()[0]["run_id"])
    data = load_dataset(str(squares), size=28)
    want = training_image_stats(data.images["train"])
    assert run.meta()["train_stats"] == want
    assert run.load_checkpoint("best")["train_stats"] == want
    x = data.images["train"].double().numpy() / 255.0
    np.testing.assert_allclose(want["mean"], [x.mean()], atol=1e-5)
    np.testing.assert_allclose(want["image_mean"]["p50"], [np.median(x.mean(axis=(2, 3)))], atol=1e-5)
    np.testing.assert_allclose(want["image_std"]["p99.5"], [np.percentile(x.std(axis=(2, 3)), 99.5)], atol=1e-5)


def test_fit_check_values():
    from core.fit_check import HIGH_ENTROPY, check_fit, training_image_stats

    images, _, _ = square_images(300, seed=0)
    stats = training_image_stats(images)
    square = {"colour": False, "width": 28, "height": 28}
    passed = [check_fit(img, 1, 28, stats, square).fits for img in images]
    assert np.mean(passed) >= 0.98, "training images themselves fit"

    white = torch.full((1, 28, 28), 250, dtype=torch.uint8)
    reasons = check_fit(white, 1, 28, stats, square).reasons()
    assert "brightness unlike the training images" in reasons and "contrast unlike the training images" in reasons
    colour = check_fit(images[0], 1, 28, stats, {"colour": True, "width": 200, "height": 60})
    assert [w.reason for w in colour.warnings] == ["colour image, grayscale model", "far from square"]
    assert "colour image" in colour.warnings[0].text and "200 × 60 px" in colour.warnings[1].text
    gray = check_fit(images[0].expand(3, 28, 28), 3, 224, None, {"colour": False, "width": 50, "height": 50})
    assert [w.reason for w in gray.warnings] == ["grayscale image, colour model",
                                                 "image much smaller than the model's input"]
    assert "no record of its training images" in gray.note, "an old run without statistics: said, not hidden"
    assert check_fit(images[0], 1, 28, stats, square, entropy_norm=HIGH_ENTROPY - 0.01).fits
    unsure = check_fit(images[0], 1, 28, stats, square, entropy_norm=0.99)
    assert unsure.reasons() == "model nearly as unsure as a guess"


def test_classify_warns_when_an_upload_is_unlike_the_training_images(trained_store, squares):
    at = open_page("classify")
    no_failure(at)
    like = next((squares / "test" / "present").glob("*.png")).read_bytes()
    rng = np.random.default_rng(0)
    photo = rng.integers(150, 256, size=(30, 90, 3)).astype(np.uint8)  # colour, wide, bright, small
    at.file_uploader[0].set_value([("scan.png", like, "image/png"), ("photo.png", png(photo), "image/png")]).run()
    no_failure(at)
    table = at.dataframe[0].value
    fit = dict(zip(table["file"], table["fit"]))
    assert "colour image, grayscale model" in fit["photo.png"]
    assert "far from square" in fit["photo.png"]
    assert "brightness unlike the training images" in fit["photo.png"]
    assert "colour image" not in fit["scan.png"] and "brightness" not in fit["scan.png"]
    warnings = texts(at.warning)
    assert "This is a colour image, but the model was trained on grayscale images" in warnings
    # (a one-epoch model is unsure of everything, so the scan may be flagged for entropy alone)
    assert "of 2 images look unlike the images this model was trained on" in warnings and "photo.png" in warnings
    assert "no record of its training images" not in texts(at.caption), "this run recorded its statistics"


def test_predict_cli_names_why_an_image_does_not_fit(trained_store, tmp_path, squares):
    from core.cli import main

    run_id = trained_store.list_runs()[0]["run_id"]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(next((squares / "test" / "absent").glob("*.png")), folder / "a_scan.png")
    Image.fromarray(np.full((40, 40, 3), (200, 30, 30), dtype=np.uint8)).save(folder / "b_red.png")
    out = tmp_path / "out"
    assert main(["predict", run_id, str(folder), "--out", str(out), "--runs-dir", str(trained_store.root)]) == 0
    with open(out / "predictions.csv", newline="") as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    assert "colour image, grayscale model" in rows["b_red.png"]["fit"]
    assert "colour image" not in rows["a_scan.png"]["fit"]


# ---------------------------------------------------------------------------- item 14
def test_integrated_gradients_on_a_readable_scale():
    from core.explain import IG_PERCENTILE, _integrated_gradients, explain, normalize_map, robust_normalize
    from helpers_runs import TinyCNN, train

    heat = np.zeros((28, 28))
    heat[10:20, 10:20] = 1.0
    heat[0, 0] = -500.0  # one extreme pixel, as IG maps have
    scaled = robust_normalize(heat)
    assert scaled.dtype == np.float32 and scaled.min() >= 0 and scaled.max() == 1.0
    np.testing.assert_allclose(scaled[10:20, 10:20], 1.0 / np.percentile(np.abs(heat), IG_PERCENTILE), rtol=1e-6)
    assert scaled[15, 15] > 0.2, "the region stays visible"
    assert normalize_map(np.abs(heat))[15, 15] < 0.01, "where min-max scaling made it vanish"
    assert robust_normalize(np.zeros((4, 4))).max() == 0.0
    assert not np.isnan(robust_normalize(np.full((3, 3), np.nan))).any()

    images, labels, _ = square_images(64, seed=0)
    model = train(TinyCNN(), images, labels, steps=20)
    x = (images[1:2].float() / 255 - 0.5) / 0.5
    target = int(labels[1])
    got = explain(model, x, target=target, method="integrated_gradients")
    raw = _integrated_gradients(model, x, target).abs().sum(dim=1)[0].detach().numpy()
    np.testing.assert_allclose(got, robust_normalize(raw), atol=1e-6)
    assert (got >= 0.999).mean() <= 0.02, "about the strongest 1 % saturate"


def test_each_method_is_described_beside_its_map(tmp_path, monkeypatch):
    from core.explain import METHOD_DESCRIPTIONS, METHODS_DISAGREE, list_methods

    assert set(METHOD_DESCRIPTIONS) == set(list_methods())
    assert "disagree" in METHODS_DISAGREE
    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    named_run(root, "run X", seed=0)
    at = open_page("classify")
    at.selectbox[1].set_value("integrated_gradients")
    at.file_uploader[0].set_value(("x.png", square_png(), "image/png")).run()
    no_failure(at)
    captions = [c.value for c in at.caption]
    assert METHOD_DESCRIPTIONS["integrated_gradients"] in captions, "beside the map"
    assert any(METHODS_DISAGREE in c for c in captions)


def test_compare_describes_the_explanation_method(tmp_path, monkeypatch):
    from core.explain import METHOD_DESCRIPTIONS, METHODS_DISAGREE

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    folder = write_dataset_folder(tmp_path / "squares")
    run = make_run(root, "medvcnn", dataset=str(folder), steps=2)
    at = open_page("compare")
    next(m for m in at.multiselect if m.label == "Runs to compare").set_value([run.id]).run()
    at.selectbox(key="explain_method").set_value("integrated_gradients").run()
    no_failure(at)
    assert f"{METHOD_DESCRIPTIONS['integrated_gradients']} {METHODS_DISAGREE}" in [c.value for c in at.caption]
