"""The pages, driven headless with Streamlit's AppTest: every page renders without an
exception on an empty and on a populated runs directory, the quick start trains a run to
completion through the job runner, Compare shows what eval.json says, Classify gives the
command line's label, and bad input ends in one readable sentence.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.evaluate import evaluate_predictions
from core.runs import FINAL_STATUSES, RunStore
from core.runs.worker import train_in_this_process as run_training  # records status and times
from core.train import build_params, make_config

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")
PAGES = ("home", "datasets", "train", "compare", "classify")
TIMEOUT = 180


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _stop_job_runner():
    """The pages start a job runner thread per runs directory; stop this test's at its end."""
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if name != "home":
        at.switch_page(f"../pages/{name}.py").run()
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "Traceback" not in texts(at.markdown) + texts(at.error)


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label.startswith(label)]
    assert found, f"no button '{label}' among {[b.label for b in at.button]}"
    return found[0]


def wait_final(store: RunStore, run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = store.get(run_id).meta()
        if meta.get("status") in FINAL_STATUSES:
            return meta
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {store.get(run_id).meta().get('status')} after {timeout} s")


def link_data(medmnist_dir: Path, data: Path) -> Path:
    """A data directory holding the shared breastmnist.npz (a symlink: never copied into the repo)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "breastmnist.npz").symlink_to(medmnist_dir / "breastmnist.npz")
    return data


def write_png(medmnist_dir: Path, path: Path, index: int = 0) -> Path:
    with np.load(medmnist_dir / "breastmnist.npz") as npz:
        Image.fromarray(npz["test_images"][index]).save(path)
    return path


def fabricate(store: RunStore, model: str, dataset: str, acc_target: float, seed: int, name: str,
              train_seconds: float = 30.0, params: int = 100_000) -> str:
    """A completed run with real metrics on made-up predictions."""
    cfg = make_config(dataset, model, "default", image_size=28, epochs=3, seed=seed)
    run = store.create_run(build_params(cfg), name=name)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    correct = rng.random(200) < acc_target
    p1 = np.where(correct == (labels == 1), rng.uniform(0.55, 0.95, 200), rng.uniform(0.05, 0.45, 200))
    scores = np.stack([1 - p1, p1], axis=1)
    ev = evaluate_predictions(scores, labels, "binary", ["malignant", "normal, benign"])
    run.write_eval({"val": ev, "test": ev})
    for e in (1, 2, 3):
        run.append_metrics({"kind": "epoch", "epoch": e, "step": 5 * e, "train_loss": 0.7 / e, "val_loss": 0.8 / e,
                            "train_acc": 0.6 + 0.05 * e, "val_acc": 0.55 + 0.05 * e, "train_auc": 0.6 + 0.08 * e,
                            "val_auc": 0.58 + 0.07 * e, "lr": 1e-3})
    store.update_meta(run.id, status="completed", epochs_done=3, epoch=3, train_seconds=train_seconds,
                      params_count=params, latency_ms=0.9, test_acc=ev["acc"], test_auc=ev["auc"],
                      task="binary", class_names=["malignant", "normal, benign"])
    return run.id


@pytest.fixture(scope="session")
def shared_medmnist() -> Path:
    """conftest's ``medmnist_dir``, for session-scoped fixtures."""
    from conftest import medmnist_test_dir

    d = medmnist_test_dir()
    if not (d / "breastmnist.npz").exists():
        pytest.skip(f"real MedMNIST files not found in {d}; set STUDIO_TEST_MEDMNIST to their directory")
    return d


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, shared_medmnist) -> Path:
    """A runs directory with one real run (MedvCNN, 1 epoch on BreastMNIST, with a best
    checkpoint) and two fabricated completed runs; tests copy it."""
    root = tmp_path_factory.mktemp("populated") / "runs"
    store = RunStore(root)
    cfg = make_config("breastmnist", "medvcnn", "default", image_size=28, epochs=1, device="cpu",
                      data_dir=str(shared_medmnist))
    run = store.create_run(build_params(cfg), name="real medvcnn")
    run_training(run, store)
    assert run.meta()["status"] == "completed"
    fabricate(store, "medvcnn", "breastmnist", 0.8, seed=1, name="fake medvcnn", params=234_000)
    fabricate(store, "resnet18", "breastmnist", 0.9, seed=2, name="fake resnet18", train_seconds=300,
              params=11_000_000)
    return root


@pytest.fixture
def populated(trained_runs, tmp_path, monkeypatch, medmnist_dir) -> RunStore:
    root = tmp_path / "populated-runs"
    shutil.copytree(trained_runs, root)
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    monkeypatch.setenv("STUDIO_DATA_DIR", str(link_data(medmnist_dir, tmp_path / "data")))
    return RunStore(root)


# ---------------------------------------------------------------------------- every page
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_empty_runs_dir(page):
    at = open_page(page)
    no_failure(at)
    assert at.title, "every page has a title"
    if page in ("compare", "classify"):
        assert "Train" in texts(at.info), "an empty page says what to do next"
    if page == "train":
        assert "dataset" in texts(at.warning).lower()


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_populated_runs_dir(page, populated):
    at = open_page(page)
    no_failure(at)
    if page == "home":
        assert "real medvcnn" in at.dataframe[0].value["Run"].tolist()
    if page == "train":
        card = texts(at.markdown)
        assert "trainable parameters" in card and "Time per epoch" in card
    if page == "datasets":
        assert "Binary" in texts(at.info)
        assert len(at.get("plotly_chart")) >= 1


def test_sidebar_shows_runs_dir_and_device(populated):
    at = open_page("home")
    sidebar = texts(at.sidebar.markdown) + texts(at.sidebar.code)
    assert str(populated.root) in sidebar and "CPU" in sidebar


# ---------------------------------------------------------------------------- home
def test_quick_start_trains_a_run_to_completion(tmp_path, monkeypatch, medmnist_dir):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(link_data(medmnist_dir, tmp_path / "data")))
    at = open_page("home")
    button(at, "Train my first model").click().run()
    no_failure(at)
    store = RunStore()
    runs = store.list_runs()
    assert len(runs) == 1 and "Train page" in texts(at.success)
    meta = wait_final(store, runs[0]["run_id"])
    assert meta["status"] == "completed", meta.get("error")
    params = store.get(runs[0]["run_id"]).params()
    assert (params["model"], params["dataset"], params["image_size"]) == ("medvcnn", "breastmnist", 28)
    ev = store.get(runs[0]["run_id"]).eval()
    assert 0.5 <= ev["test"]["auc"] <= 1.0
    # the page reads the same run back from the store
    at.run()
    assert at.dataframe[0].value["Status"].iloc[0].endswith("Completed")


def test_quick_start_without_dataset_says_which_file_goes_where(monkeypatch, tmp_path):
    import core.data.medmnist_source as source

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(source, "_download", offline)
    at = open_page("home")
    button(at, "Train my first model").click().run()
    assert not at.exception
    message = texts(at.error)
    assert "breastmnist.npz" in message and str(tmp_path / "data") in message
    assert RunStore().list_runs() == [], "no run is created for a missing dataset"


# ---------------------------------------------------------------------------- datasets
def test_datasets_imports_an_official_npz(medmnist_dir):
    at = open_page("datasets")
    data = (medmnist_dir / "breastmnist.npz").read_bytes()
    at.file_uploader[0].set_value(("breastmnist.npz", data, "application/octet-stream")).run()
    no_failure(at)
    assert "Binary" in texts(at.info), "after the import the dataset is shown"


def test_datasets_refuses_a_damaged_npz():
    at = open_page("datasets")
    at.file_uploader[0].set_value(("breastmnist.npz", b"not really a numpy file", "application/octet-stream")).run()
    assert not at.exception
    assert "MD5" in texts(at.error) or "does not match" in texts(at.error)


def _zip_of_classes(with_junk: bool = True) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as zf:
        for cls, level in (("normal", 60), ("lesion", 190)):
            for i in range(12):
                img = Image.fromarray((rng.normal(level, 20, (40, 40))).clip(0, 255).astype(np.uint8))
                out = io.BytesIO()
                img.save(out, format="PNG")
                zf.writestr(f"scans/{cls}/{i}.png", out.getvalue())
        if with_junk:
            zf.writestr("scans/lesion/notes.txt", "not an image")
            zf.writestr("scans/normal/broken.png", b"\x89PNG garbage")
    return buf.getvalue()


def test_datasets_imports_a_zip_of_class_folders_with_a_report():
    at = open_page("datasets")
    at.file_uploader[1].set_value(("scans.zip", _zip_of_classes(), "application/zip")).run()
    no_failure(at)
    assert "scans" in texts(at.success)
    frames = [d.value for d in at.dataframe]
    skipped = next(f for f in frames if "reason" in f.columns)
    assert set(skipped["file"]) == {"scans/lesion/notes.txt", "scans/normal/broken.png"}
    # the import is kept per browser session under the data dir, and the Train page offers it
    folders = list((Path(RunStore().root).parent / "data" / "uploads").glob("*/scans-*"))
    assert len(folders) == 1
    at.switch_page("../pages/train.py").run()
    no_failure(at)
    assert any("scans" in str(o) for o in at.selectbox[0].options)


def test_datasets_rejects_a_file_that_is_not_a_zip():
    at = open_page("datasets")
    at.file_uploader[1].set_value(("scans.zip", b"plain text", "application/zip")).run()
    assert not at.exception
    assert "zip" in texts(at.error)


# ---------------------------------------------------------------------------- train
def test_train_queues_the_chosen_settings_and_shows_progress(tmp_path, monkeypatch, medmnist_dir):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(link_data(medmnist_dir, tmp_path / "data")))
    at = open_page("train")
    no_failure(at)
    next(n for n in at.number_input if n.label == "Epochs").set_value(1)
    next(n for n in at.number_input if n.label == "Random seed").set_value(7)
    at.multiselect[0].set_value(["bloodcnn"])
    at.text_input[0].set_value("my test")
    at.run()
    button(at, "Start training (2 runs)").click().run()
    no_failure(at)
    store = RunStore()
    runs = {r["model"]: r for r in store.list_runs()}
    assert set(runs) == {"medvcnn", "bloodcnn"}
    for model, row in runs.items():
        cfg = store.get(row["run_id"]).params()["config"]
        assert cfg["epochs"] == 1 and cfg["seed"] == 7 and cfg["dataset"] == "breastmnist"
        assert row["name"] == f"my test ({model})"
    # both show in the live panel; the second waits its turn and can be cancelled there
    at.run()
    panel = texts(at.markdown)
    assert "my test (medvcnn)" in panel and "my test (bloodcnn)" in panel
    queued = runs["bloodcnn"]["run_id"]
    if store.get(queued).meta()["status"] == "queued":
        at.button(key=f"cancel-{queued}").click().run()
        assert store.get(queued).meta()["status"] in ("cancelled", "running")
    first = wait_final(store, runs["medvcnn"]["run_id"])
    assert first["status"] == "completed", first.get("error")
    wait_final(store, queued)
    at.run()
    no_failure(at)
    assert "test accuracy" in texts(at.success)
    assert len(at.get("plotly_chart")) >= 1, "learning curves of the finished run"


def test_train_offers_paper_recipe_only_for_seed_models(tmp_path, monkeypatch, medmnist_dir):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(link_data(medmnist_dir, tmp_path / "data")))
    at = open_page("train")
    assert any("paper" in o for o in at.radio[0].options)
    next(s for s in at.selectbox if s.label == "Architecture").set_value("resnet18").run()
    no_failure(at)
    assert not any("paper" in o for o in at.radio[0].options)


# ---------------------------------------------------------------------------- compare
def test_compare_leaderboard_shows_values_from_eval_json(populated):
    at = open_page("compare")
    no_failure(at)
    board = at.dataframe[0].value
    assert len(board) == 3
    for row in populated.list_runs():
        test = populated.get(row["run_id"]).eval()["test"]
        shown = board[board["Run id"] == row["run_id"]].iloc[0]
        assert shown["Test ACC"] == pytest.approx(test["acc"])
        assert shown["Test AUC"] == pytest.approx(test["auc"])
        assert shown["Macro F1"] == pytest.approx(test["macro"]["f1"])
    # the three completed runs are selected: the score table carries their numbers too
    scores = at.dataframe[1].value
    assert len(scores) == 3 and set(scores.columns) >= {"ACC", "AUC", "Macro F1", "ECE"}
    assert sorted(scores["ACC"]) == pytest.approx(sorted(board["Test ACC"]))
    claims = next(d.value for d in at.dataframe if "paper claims (ACC)" in getattr(d.value, "columns", []))
    assert "0.831" in claims.to_string(), "MedvCNN's paper claim on BreastMNIST"
    csv_button = at.get("download_button")
    assert csv_button, "the leaderboard can be downloaded"
    charts = at.get("plotly_chart")
    assert len(charts) >= 7  # curves, ROC, 3 confusion matrices, F1 bars, 2 scatters


def test_compare_summarises_runs_repeated_with_several_seeds(populated):
    """The real and the fabricated MedvCNN runs differ only by seed (0 and 1)."""
    import statistics

    at = open_page("compare")
    no_failure(at)
    tables = [d.value for d in at.dataframe if "Seeds" in getattr(d.value, "columns", [])]
    assert len(tables) == 1
    group = tables[0]
    assert len(group) == 1 and group.iloc[0]["Model"] == "medvcnn" and group.iloc[0]["Seeds"] == "0, 1"
    accs = [populated.get(r["run_id"]).eval()["test"]["acc"] for r in populated.list_runs() if r["model"] == "medvcnn"]
    assert group.iloc[0]["Test ACC"] == f"{statistics.mean(accs):.3f} ± {statistics.stdev(accs):.3f}"


def test_compare_filters_by_model(populated):
    at = open_page("compare")
    next(m for m in at.multiselect if m.label == "Models").set_value(["resnet18"]).run()
    no_failure(at)
    assert at.dataframe[0].value["Model"].tolist() == ["resnet18"]


def test_compare_renames_tags_and_deletes_after_confirmation(populated):
    at = open_page("compare")
    target = next(r for r in populated.list_runs() if r["name"] == "fake resnet18")
    index = [r["run_id"] for r in populated.list_runs()].index(target["run_id"])
    manage = at.selectbox(key="manage_run")
    manage.select_index(index).run()
    at.text_input(key=f"name-{target['run_id']}").set_value("ResNet baseline").run()
    at.button(key="rename").click().run()
    no_failure(at)
    assert populated.get(target["run_id"]).meta()["name"] == "ResNet baseline"
    manage = at.selectbox(key="manage_run")
    manage.select_index(index).run()
    at.text_input(key=f"tags-{target['run_id']}").set_value("baseline, final").run()
    at.button(key="tag").click().run()
    assert populated.get(target["run_id"]).meta()["tags"] == ["baseline", "final"]
    at.selectbox(key="manage_run").select_index(index).run()
    assert at.button(key="delete").disabled, "deleting needs the confirmation first"
    at.checkbox(key=f"sure-{target['run_id']}").check().run()
    at.button(key="delete").click().run()
    no_failure(at)
    assert not populated.exists(target["run_id"])
    assert len(at.dataframe[0].value) == 2


# ---------------------------------------------------------------------------- classify
def _cli_label(run_id: str, image: Path, out: Path) -> str:
    """The label `python -m core predict` writes for one image."""
    proc = subprocess.run([sys.executable, "-m", "core", "predict", run_id, str(image), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    return rows[0]["label"]


def test_classify_gives_the_command_lines_label(populated, tmp_path, medmnist_dir):
    real = next(r for r in populated.list_runs() if r["name"] == "real medvcnn")
    image = write_png(medmnist_dir, tmp_path / "case.png", index=3)
    at = open_page("classify")
    no_failure(at)
    assert len(at.selectbox[0].options) == 1, "only runs with a best checkpoint can classify"
    at.file_uploader[0].set_value(("case.png", image.read_bytes(), "image/png")).run()
    no_failure(at)
    shown = [m.value.removeprefix("### ") for m in at.markdown if m.value.startswith("### ")]
    assert len(shown) == 1
    assert len(at.image) >= 2, "the image and its explanation overlay"
    assert "confidence" in texts(at.success) + texts(at.info) + texts(at.warning)

    assert shown[0] == _cli_label(real["run_id"], image, tmp_path / "out")


def test_classify_skips_bad_files_and_tables_the_rest(populated, tmp_path, medmnist_dir):
    good = [write_png(medmnist_dir, tmp_path / f"ok{i}.png", index=i).read_bytes() for i in range(2)]
    at = open_page("classify")
    at.file_uploader[0].set_value([
        ("ok0.png", good[0], "image/png"),
        ("notes.png", b"this is text, not a picture", "image/png"),
        ("ok1.png", good[1], "image/png"),
    ]).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "notes.png" in errors[0] and "Traceback" not in errors[0]
    assert "0x" not in errors[0], "no Python object reprs in messages"
    table = at.dataframe[0].value
    assert table["file"].tolist() == ["ok0.png", "ok1.png"]
    assert set(table.columns) >= {"label", "probability", "confidence"}
    assert at.get("download_button"), "the results can be downloaded as CSV"


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_classify_other_explanations(populated, tmp_path, medmnist_dir, method):
    image = write_png(medmnist_dir, tmp_path / "case.png").read_bytes()
    at = open_page("classify")
    at.selectbox[1].set_value(method)
    at.checkbox[0].check()
    at.checkbox[1].check()
    at.file_uploader[0].set_value(("case.png", image, "image/png")).run()
    no_failure(at)
    assert len(at.image) >= 2


# ---------------------------------------------------------------------------- error boundary
def test_error_boundary_shows_one_sentence_and_no_traceback():
    def script():
        import streamlit as st

        from core.errors import StudioError
        from studio import ui

        with ui.guard("testing"):
            raise StudioError("bloodmnist_64.npz is not in /data; put it there")
        with ui.guard("doing the sums"):
            raise ZeroDivisionError("division by zero")
        st.write("still here")

    at = AppTest.from_function(script).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "bloodmnist_64.npz is not in /data; put it there.",
        "Something went wrong while doing the sums; reload the page and try again; if it keeps happening, "
        "the server log has the details.",
    ]
    assert "still here" in texts(at.markdown)


# ---------------------------------------------------------------------------- page helpers
def test_paper_claims_beside_measured_accuracy():
    from studio.paper_claims import PAPER_CLAIMS, claims_table

    table = claims_table([
        {"run": "a", "model": "medvcnn", "dataset": "breastmnist", "image_size": 28, "test_acc": 0.80},
        {"run": "b", "model": "medvcnn", "dataset": "bloodmnist", "image_size": 28, "test_acc": 0.90},
        {"run": "c", "model": "resnet18", "dataset": "breastmnist", "image_size": 28, "test_acc": 0.85},
    ])
    assert table["run"].tolist() == ["a", "b"], "only seed-paper models have claims"
    a, b = table.iloc[0], table.iloc[1]
    assert a["paper claims (ACC)"] == 0.831 and a["difference"] == pytest.approx(-0.031)
    assert "Tables 6 and 7" in a["source"]
    assert pd_isna(b["paper claims (ACC)"]) and "not reported on bloodmnist" in b["source"]
    # every claim of seed-models.md is there, as numbers in [0, 1]
    assert PAPER_CLAIMS["medvcnn"]["acc"] == {"pathmnist": 0.841, "chestmnist": 0.949, "octmnist": 0.847,
                                              "pneumoniamnist": 0.945, "breastmnist": 0.831,
                                              "tissuemnist": 0.595, "organamnist": 0.878}
    assert PAPER_CLAIMS["medvlstm"]["acc"]["octmnist"] == 0.917
    assert all(0 < v <= 1 for c in PAPER_CLAIMS.values() for v in c["acc"].values())


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_chart_builders_draw_the_data_they_are_given():
    import pandas as pd

    from studio import charts

    epochs = [{"kind": "epoch", "epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 0.5 + e / 10,
               "val_acc": 0.5, "val_auc": 0.6, "train_auc": None} for e in (1, 2, 3)]
    fig = charts.learning_curves(epochs)
    names = [(t.name, t.xaxis) for t in fig.data]
    assert ("training", "x") in names and ("validation", "x3") in names
    assert ("training", "x3") not in names, "a metric that was never logged is not drawn"
    assert list(fig.data[0].y) == pytest.approx([1, 0.5, 1 / 3])

    fig = charts.confusion_heatmap([[5, 1], [2, 8]], ["a", "b"], "run")
    assert fig.data[0].text.tolist() == [[5, 1], [2, 8]]
    assert fig.data[0].z[1][1] == pytest.approx(0.8), "colour is the share of the true class"

    fig = charts.probability_bars(["a", "b", "c"], [0.2, 0.7, 0.1])
    assert list(fig.data[0].text) == ["20%", "70%", "10%"]
    assert fig.data[0].marker.color[1] != fig.data[0].marker.color[0], "the winner stands out"

    fig = charts.roc_chart([{"label": "r1", "fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1], "auc": 0.9}])
    assert fig.data[1].name == "r1 (AUC 0.900)"

    counts = pd.DataFrame({"split": ["train", "train", "test"], "class": ["a", "b", "a"], "count": [3, 4, 5]})
    assert {t.name for t in charts.class_balance(counts).data} == {"training", "test"}

    steps = [{"kind": "step", "step": s, "loss": 1 / s, "lr": 1e-3} for s in (1, 2)]
    assert [t.name for t in charts.step_curves(steps).data] == ["training loss", "learning rate"]


def test_formatting_for_people():
    from studio import ui

    assert ui.fmt_duration(42) == "42 s" and ui.fmt_duration(200) == "3 min 20 s"
    assert ui.fmt_duration(3900) == "1 h 05 min" and ui.fmt_duration(None) == "-"
    assert ui.fmt_duration(0.2) == "under 1 s" and ui.fmt_duration(0.7) == "1 s" and ui.fmt_duration(-3) == "under 1 s"
    assert ui.fmt_estimate(0.1) == "under 1 s" and ui.fmt_estimate(45) == "about 45 s"
    assert ui.fmt_count(234_050) == "234.1 k" and ui.fmt_count(11_200_000) == "11.20 M"
    assert ui.fmt_metric(0.87456) == "0.875" and ui.fmt_metric(None) == "-" and ui.fmt_metric(float("nan")) == "-"
    assert ui.sentence("learning rate must be above 0") == "Learning rate must be above 0."
    assert ui.sentence("bloodmnist_64.npz is missing.") == "bloodmnist_64.npz is missing."
    assert ui.sentence("x.png is not an image (cannot identify image file <_io.BytesIO object at 0x7f55>)") == \
        "x.png is not an image (unknown or damaged image format)."
    assert ui.dataset_label("/data/uploads/abc/scans-1234") == "scans-1234 (your images)"
    row = {"run_id": "20261123-x", "name": "medvcnn on breastmnist, 28 px", "model": "medvcnn",
           "dataset": "breastmnist", "image_size": 28, "created": "2026-11-23T20:06:24+00:00"}
    assert ui.run_label(row) == "medvcnn on breastmnist, 28 px · 23 Nov 20:06"
    assert ui.run_label({**row, "name": "baseline"}).startswith("baseline (medvcnn on breastmnist, 28 px)")


def test_epoch_time_estimate_measures_the_model():
    from studio import ui

    fixed, per_image = ui.measure_train_step("medvcnn", 28, 1, 2, batch_size=32)
    assert fixed >= 0 and per_image > 0
    # 546 images in batches of 128 is 5 steps, plus a validation pass
    seconds = ui.epoch_seconds((0.1, 0.001), 128, 546, 78)
    assert seconds == pytest.approx(5 * (0.1 + 0.128) + (0.1 + 0.078) / 3)
