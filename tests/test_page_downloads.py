"""Downloads from the pages (AppTest): a run's model as ONNX or TorchScript with its model card,
from Compare's run card and from Classify, and one-click reports of a run and of a comparison.

The bytes behind each download button are read back from Streamlit's media store and opened
as what they claim to be: the zip's model runs in onnxruntime / ``torch.jit.load`` and gives
PyTorch's logits, the model card is the run's, the reports are HTML and PDF.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from helpers_runs import CLASS_NAMES, make_run, square_images, write_dataset_folder

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")
HOSTILE = '<img src=x onerror=alert(1)> & "run"'


@pytest.fixture(autouse=True)
def _stop_job_runner():
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


@pytest.fixture
def media(monkeypatch) -> dict[str, bytes]:
    """file id -> bytes of every file a page hands to Streamlit's media store (download buttons)."""
    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        files[file_id] = bytes(path_or_data) if isinstance(path_or_data, (bytes, bytearray)) else b""
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return files


@pytest.fixture(scope="module")
def square_runs(tmp_path_factory) -> Path:
    """A runs directory with two quick medvcnn runs on a dataset folder that is on disk."""
    root = tmp_path_factory.mktemp("downloads")
    data = write_dataset_folder(root / "squares")
    runs = root / "runs"
    make_run(runs, "medvcnn", dataset=str(data), steps=30, seed=0)
    make_run(runs, "medvcnn", dataset=str(data), steps=30, seed=1)
    return runs


@pytest.fixture
def runs_dir(square_runs, tmp_path, monkeypatch) -> Path:
    import shutil

    from core.runs import RunStore

    root = tmp_path / "runs-copy"
    shutil.copytree(square_runs, root)
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    store = RunStore(root)
    store.rebuild_index()
    first = sorted(r["run_id"] for r in store.list_runs())[0]
    store.rename(first, HOSTILE)
    return root


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page(f"../pages/{name}.py").run()
    return at


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def download(at: AppTest, media: dict[str, bytes], label: str) -> bytes:
    """The bytes behind the download button whose label starts with ``label``."""
    found = [b for b in at.download_button if b.label.startswith(label)]
    assert found, f"no download button '{label}' among {[b.label for b in at.download_button]}"
    file_id = Path(found[0].proto.url).name.split(".")[0]
    data = media.get(file_id)
    assert data, "the download button carries data"
    return data


def _run_ids(root: Path) -> list[str]:
    from core.runs import RunStore

    return sorted(r["run_id"] for r in RunStore(root).list_runs())


def _reference(run_id: str, root: Path):
    """PyTorch's logits of the run's best model on new images, and those images normalised."""
    from core.inference import load_run_model, preprocess
    from core.runs import RunStore

    lm = load_run_model(RunStore(root).get(run_id))
    images, _, _ = square_images(6, seed=77)
    x = preprocess(lm, images)
    with torch.no_grad():
        return lm.model(x).numpy(), x.numpy()


def _members(zip_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


# ---------------------------------------------------------------------------- the model
def test_compare_card_downloads_a_checked_onnx_model_with_its_card(runs_dir, media):
    import onnxruntime as ort

    run_id = _run_ids(runs_dir)[0]
    at = open_page("compare")
    no_failure(at)
    at.selectbox(key="compare-dl-run").set_value(run_id).run()
    at.selectbox(key=f"compare-dl-{run_id}-format").set_value("onnx").run()
    assert not [b for b in at.download_button if b.label.startswith("Download the ONNX")], "built only on request"
    at.button(key=f"compare-dl-{run_id}-export-onnx").click().run()
    no_failure(at)
    files = _members(download(at, media, "Download the ONNX model and its model card"))
    assert sorted(files) == ["model.onnx", "model_card.md"]
    expected, x = _reference(run_id, runs_dir)
    session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    assert got.shape == (6, 2) and np.abs(got - expected).max() < 1e-4
    card = files["model_card.md"].decode()
    assert card.startswith("# Model card:") and run_id in card and "## Export" in card and "model.onnx" in card
    assert "Checked before saving" in "\n".join(c.value for c in at.caption)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_classify_card_downloads_a_torchscript_model(runs_dir, media):
    at = open_page("classify")
    no_failure(at)
    chosen = at.selectbox[0].value  # the Model picker: a run id, or the run's index row
    run_id = chosen if isinstance(chosen, str) else chosen["run_id"]
    at.selectbox(key="classify-format").set_value("torchscript").run()
    at.button(key="classify-export-torchscript").click().run()
    no_failure(at)
    files = _members(download(at, media, "Download the TorchScript model and its model card"))
    assert sorted(files) == ["model.pt", "model_card.md"]
    extra = {"studio.json": ""}
    loaded = torch.jit.load(io.BytesIO(files["model.pt"]), map_location="cpu", _extra_files=extra)
    expected, x = _reference(run_id, runs_dir)
    with torch.no_grad():
        got = loaded(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert run_id in bytes(extra["studio.json"]).decode() and "present" in files["model_card.md"].decode()


def test_a_failed_export_is_one_sentence_and_offers_no_file(runs_dir, media, monkeypatch):
    import core.export

    from core.errors import StudioError

    def refuse(*args, **kwargs):
        raise StudioError("the onnx export of run x gives logits that differ from PyTorch's; try the other format.")

    monkeypatch.setattr(core.export, "export_run", refuse)
    at = open_page("classify")
    at.button(key="classify-export-onnx").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The onnx export of run x gives logits that differ from PyTorch's; "
                                           "try the other format."]
    assert not [b for b in at.download_button if b.label.startswith("Download the ONNX")]


# ---------------------------------------------------------------------------- reports
def test_compare_card_makes_a_report_of_one_run_in_html_and_pdf(runs_dir, media):
    run_id = _run_ids(runs_dir)[0]
    at = open_page("compare")
    at.selectbox(key="compare-dl-run").set_value(run_id).run()
    at.button(key=f"compare-dl-{run_id}-report").click().run()
    no_failure(at)
    html = download(at, media, "Download the report (HTML)").decode()
    pdf = download(at, media, "Download the report (PDF)")
    assert pdf.startswith(b"%PDF")
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;run&quot;" in html
    for section in ("Settings", "Learning curves", "Per class", "Confusion matrix", "Calibration",
                    "Example explanations"):
        assert f">{section}" in html
    assert html.count('src="data:image/png;base64,') >= 3 and "http" not in html.split("<body>")[1].split('src="')[0]


def test_compare_makes_a_report_of_the_comparison(runs_dir, media):
    at = open_page("compare")
    no_failure(at)
    picked = next(m for m in at.multiselect if m.label == "Runs to compare")
    assert len(picked.value) == 2, "both finished runs are selected"
    at.button(key="compare-dl-all-report").click().run()
    no_failure(at)
    html = download(at, media, "Download the report (HTML)").decode()
    assert "Comparison of 2 runs" in html and "Scores side by side" in html
    for run_id in _run_ids(runs_dir):
        assert run_id in html
    assert download(at, media, "Download the report (PDF)").startswith(b"%PDF")


# ---------------------------------------------------------------------------- per-class table
def test_compare_shows_the_per_class_table(runs_dir):
    from core.runs import RunStore

    at = open_page("compare")
    no_failure(at)
    table = next(d.value for d in at.dataframe if "Specificity" in getattr(d.value, "columns", []))
    assert set(table.columns) >= {"Run", "Class", "Test images", "Sensitivity", "Specificity", "Precision",
                                  "Recall", "F1", "Accuracy"}
    assert len(table) == 4 and set(table["Class"]) == set(CLASS_NAMES)
    shown = {(r["Class"], r["Test images"], round(r["Sensitivity"], 6), round(r["Specificity"], 6),
              round(r["Precision"], 6), round(r["Accuracy"], 6)) for _, r in table.iterrows()}
    expected = set()
    store = RunStore(runs_dir)
    for run_id in _run_ids(runs_dir):
        cm = np.asarray(store.get(run_id).eval()["test"]["confusion_matrix"])
        for j, name in enumerate(CLASS_NAMES):
            tp, fn, fp = cm[j, j], cm[j].sum() - cm[j, j], cm[:, j].sum() - cm[j, j]
            tn = cm.sum() - tp - fn - fp
            expected.add((name, cm[j].sum(), round(tp / (tp + fn), 6), round(tn / (tn + fp), 6),
                          round(tp / (tp + fp) if tp + fp else 0.0, 6), round((tp + tn) / cm.sum(), 6)))
    assert shown == expected
