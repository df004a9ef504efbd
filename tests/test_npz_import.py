"""A person's own ``.npz`` (altered, relabelled or laid out like MedMNIST's) imported as their
own dataset with the same checks as any upload; and an import on the Datasets page keeps the
imported dataset selected and says so.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.data import NotOfficialNpz, import_npz_bytes, import_npz_dataset, load_dataset
from core.errors import DataError

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def square_set(n: int, seed: int, k: int = 2, side: int = 28, rgb: bool = False):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.integers(0, 90, (n, side, side, 3) if rgb else (n, side, side)).astype(np.uint8)
    x[y == 1, 8:16, 8:16] = 230  # class 1 has a bright square
    return x, y.reshape(-1, 1).astype(np.uint8)


def medmnist_like(n=(60, 12, 16), k: int = 2, **extra) -> bytes:
    arrays = {}
    for split, count, seed in zip(("train", "val", "test"), n, (0, 1, 2)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = square_set(count, seed, k)
    return npz_bytes(**arrays, **extra)


# ---------------------------------------------------------------------------- core
def test_an_altered_breastmnist_is_refused_as_official_and_imported_as_own(tmp_path):
    data = medmnist_like()
    with pytest.raises(NotOfficialNpz, match="does not match the official breastmnist.npz"):
        import_npz_bytes(data, "breastmnist.npz", tmp_path / "data")
    assert not (tmp_path / "data" / "breastmnist.npz").exists(), "nothing official is written"
    folder = import_npz_dataset(data, "breastmnist.npz", tmp_path / "uploads")
    ds = load_dataset(str(folder), size=28)
    assert ds.source == "npz" and ds.task == "binary" and ds.channels == 1 and ds.image_size == 28
    assert ds.class_names == ["malignant", "normal, benign"], "a relabelled MedMNIST file keeps its class names"
    assert {s: len(ds.labels[s]) for s in ds.splits} == {"train": 60, "val": 12, "test": 16}
    with np.load(io.BytesIO(data)) as npz:
        assert ds.labels["test"].tolist() == npz["test_labels"].reshape(-1).tolist()
        assert np.array_equal(ds.images["train"][:, 0].numpy(), npz["train_images"])
    assert any("class names of MedMNIST breastmnist" in n for n in ds.report.notes)
    assert import_npz_dataset(data, "breastmnist.npz", tmp_path / "uploads") == folder, "same bytes, same folder"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [folder.name]


def test_the_real_breastmnist_relabelled_is_imported_as_own(tmp_path, medmnist_dir):
    with np.load(medmnist_dir / "breastmnist.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["train_labels"] = 1 - arrays["train_labels"]  # relabelled on purpose
    data = npz_bytes(**arrays)
    with pytest.raises(NotOfficialNpz):
        import_npz_bytes(data, "breastmnist.npz", tmp_path / "data")
    ds = load_dataset(str(import_npz_dataset(data, "breastmnist.npz", tmp_path / "uploads")), size=28)
    assert ds.labels["train"].tolist() == arrays["train_labels"].reshape(-1).tolist()
    assert len(ds.labels["train"]) == 546 and ds.class_names == ["malignant", "normal, benign"]


def test_own_class_names_and_carved_splits(tmp_path):
    x, y = square_set(100, 3, k=4, rgb=True)
    data = npz_bytes(train_images=x, train_labels=y, class_names=np.array(["a<b>", "b", "c", "d"]))
    ds = load_dataset(str(import_npz_dataset(data, "my scans.npz", tmp_path)), size=28, seed=5)
    assert ds.class_names == ["a<b>", "b", "c", "d"] and ds.task == "multi-class" and ds.channels == 3
    assert {s: len(ds.labels[s]) for s in ds.splits} == {"train": 68, "val": 16, "test": 16}
    for split in ds.splits:  # stratified: every class in every split
        assert set(ds.labels[split].tolist()) == {0, 1, 2, 3}
    assert any("carved from train, stratified" in n for n in ds.report.notes)
    assert ds.name == "my scans (own)"
    assert load_dataset(str(import_npz_dataset(data, "my scans.npz", tmp_path)), size=64).image_size == 64


def test_a_npz_file_path_loads_directly(tmp_path):
    path = tmp_path / "own.npz"
    path.write_bytes(medmnist_like(k=3))
    ds = load_dataset(str(path), size=28)
    assert ds.class_names == ["class 0", "class 1", "class 2"] and ds.task == "multi-class"


@pytest.mark.parametrize("arrays, message", [
    ({"train_images": np.zeros((4, 28, 28), np.float32), "train_labels": np.array([0, 1, 0, 1])},
     "has type float32; save the pixels as uint8"),
    ({"train_images": np.zeros((4, 28, 20), np.uint8), "train_labels": np.array([0, 1, 0, 1])},
     "save square images"),
    ({"train_images": np.zeros((4, 28, 28), np.uint8)}, "lacks train_images or train_labels"),
    ({"train_images": np.zeros((4, 28, 28), np.uint8), "train_labels": np.array([0, 1, 0])},
     "there are 4 images; save one label per image"),
    ({"train_images": np.zeros((4, 28, 28), np.uint8), "train_labels": np.zeros(4, np.int64)},
     "a classifier needs at least two classes"),
    ({"train_images": np.zeros((4, 28, 28), np.uint8), "train_labels": np.array([0, 1, 2, 1]),
      "class_names": np.array(["a", "b"])}, "class_names lists 2 names but the labels go up to 2"),
    ({"train_images": np.zeros((4, 28, 28), np.uint8), "train_labels": np.array([0.0, 1.0, 0.0, 1.0])},
     "has type float64; save whole-number class labels"),
    ({"train_images": np.zeros((4, 28, 28), np.uint8), "train_labels": np.array([0, 1, 0, 1]),
      "val_images": np.zeros((2, 28, 28), np.uint8)}, "has val_images or val_labels but not both"),
])
def test_bad_files_are_refused_and_leave_nothing_behind(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        import_npz_dataset(npz_bytes(**arrays), "x.npz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pickled_objects_and_garbage_are_refused(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([{"x": 1}, 2], dtype=object))
    with pytest.raises(DataError, match="holds Python objects, which are never loaded"):
        import_npz_dataset(buf.getvalue(), "x.npz", tmp_path)
    with pytest.raises(DataError, match="is not a readable .npz file"):
        import_npz_dataset(b"not a zip at all", "x.npz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_model_trains_on_an_imported_npz(tmp_path, monkeypatch):
    from core.runs import RunStore
    from core.runs.worker import train_in_this_process as run_training  # records status and times
    from core.train import build_params, make_config

    folder = import_npz_dataset(medmnist_like(), "breastmnist.npz", tmp_path / "uploads")
    store = RunStore(tmp_path / "runs")
    cfg = make_config(str(folder), "medvcnn", "default", image_size=28, epochs=1, device="cpu", batch_size=32)
    run = store.create_run(build_params(cfg), name="own npz")
    run_training(run, store)
    meta = run.meta()
    assert meta["status"] == "completed", meta.get("error")
    assert meta["class_names"] == ["malignant", "normal, benign"] and run.eval()["test"]["n"] == 16


# ---------------------------------------------------------------------------- the Datasets page
@pytest.fixture(autouse=True)
def _stop_job_runner():
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


def open_datasets() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("../pages/datasets.py").run()
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_page_imports_an_altered_npz_as_own_data_and_keeps_it_selected(tmp_path):
    at = open_datasets()
    at.file_uploader(key="medmnist_npz").set_value(("breastmnist.npz", medmnist_like(), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert "does not match the official breastmnist.npz" in texts(at.error)
    assert "import it as your own dataset" in texts(at.info)
    at.button(key="npz_own").click().run()
    assert not at.exception and not at.error, texts(at.error)
    confirm = texts(at.success)
    assert "Imported breastmnist.npz as your own dataset" in confirm and "selected under “Your own images”" in confirm
    assert "Binary: each image is one of two classes (malignant, normal/benign)" in texts(at.info)
    folders = list((tmp_path / "data" / "uploads").glob("*/breastmnist-*"))
    assert len(folders) == 1 and (folders[0] / "dataset.npz").is_file()
    at.run()  # another rerun: still imported, still shown, no second error
    assert not at.error and "as your own dataset" in texts(at.success)
    own = next(s for s in at.selectbox if s.label == "Or look at an imported folder again")
    assert own.value == folders[0], "the other tab selects it too"
    at.switch_page("../pages/train.py").run()
    assert not at.exception and not at.error, texts(at.error)
    # offered by its readable name, without the content hash of its folder (issue 15 item 13)
    assert "breastmnist (your images)" in at.selectbox[0].options, "the Train page offers it"


def test_page_keeps_an_imported_official_file_selected(medmnist_dir):
    at = open_datasets()
    at.selectbox(key="medmnist_flag").set_value("pathmnist").run()
    data = (medmnist_dir / "bloodmnist.npz").read_bytes()
    at.file_uploader(key="medmnist_npz").set_value(("bloodmnist.npz", data, "application/octet-stream")).run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.selectbox(key="medmnist_flag").value == "bloodmnist", "the imported dataset is selected"
    assert "Imported bloodmnist.npz (MD5 checked); it is selected below." in texts(at.success)
    assert "Multi-class: each image is one of 8 classes" in texts(at.info)
    at.run()
    assert at.selectbox(key="medmnist_flag").value == "bloodmnist", "and stays selected"


def test_the_own_images_tab_takes_a_npz(tmp_path):
    at = open_datasets()
    x, y = square_set(40, 4)
    at.file_uploader[1].set_value(("scans.npz", npz_bytes(train_images=x, train_labels=y), "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert "is ready: pick it on the Train page" in texts(at.success)
    assert "Binary: each image is one of two classes (class 0, class 1)" in texts(at.info)
