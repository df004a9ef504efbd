"""MedMNIST: the real official files, import with MD5 checks, missing files, hostile .npz files."""

from __future__ import annotations

import functools
import hashlib
import shutil
from pathlib import Path

import medmnist
import numpy as np
import pytest
import torch

from core.data import (
    MEDMNIST_SIZES,
    SPLITS,
    import_npz,
    import_npz_bytes,
    list_datasets,
    list_medmnist,
    load_dataset,
    load_medmnist,
    medmnist_filename,
    medmnist_md5,
    medmnist_url,
)
from core.errors import DataError

INFO = medmnist.INFO


@functools.lru_cache(maxsize=None)
def _load(flag: str, folder: str):
    return load_medmnist(flag, data_dir=folder, download=False)


@pytest.fixture
def breast(medmnist_dir):
    return _load("breastmnist", str(medmnist_dir))


@pytest.fixture
def blood(medmnist_dir):
    return _load("bloodmnist", str(medmnist_dir))


# --- the real files -------------------------------------------------------------------------


def test_breastmnist(breast, medmnist_dir):
    assert (breast.name, breast.source, breast.task) == ("breastmnist", "medmnist", "binary")
    assert breast.class_names == ["malignant", "normal, benign"]
    assert {s: tuple(breast.images[s].shape) for s in SPLITS} == {
        "train": (546, 1, 28, 28),
        "val": (78, 1, 28, 28),
        "test": (156, 1, 28, 28),
    }
    assert (breast.channels, breast.image_size, breast.num_classes, breast.splits) == (1, 28, 2, SPLITS)
    raw = np.load(medmnist_dir / "breastmnist.npz")
    for s in SPLITS:
        y = breast.labels[s]
        assert y.dtype == torch.int64 and y.shape == (breast.images[s].shape[0],)
        assert (y.min().item(), y.max().item()) == (0, 1)
        assert breast.images[s].dtype == torch.uint8
        assert torch.equal(breast.images[s][:, 0], torch.from_numpy(raw[f"{s}_images"]))
        assert y.tolist() == raw[f"{s}_labels"].ravel().tolist()
    assert breast.describe_task() == "Binary: each image is one of two classes (malignant, normal/benign)"
    assert breast.report.files_read == [str(medmnist_dir / "breastmnist.npz")] and not breast.report.notes


def test_bloodmnist(blood, medmnist_dir):
    assert blood.task == "multi-class" and blood.num_classes == 8 and blood.channels == 3
    assert blood.class_names[0] == "basophil" and blood.class_names[-1] == "platelet"
    assert blood.class_names == [INFO["bloodmnist"]["label"][str(i)] for i in range(8)]
    assert [blood.images[s].shape[0] for s in SPLITS] == [11959, 1712, 3421]
    assert all(blood.images[s].shape[1:] == (3, 28, 28) for s in SPLITS)
    for s in SPLITS:
        assert (blood.labels[s].min().item(), blood.labels[s].max().item()) == (0, 7)
    raw = np.load(medmnist_dir / "bloodmnist.npz")["val_images"]  # (N, H, W, 3)
    assert torch.equal(blood.images["val"], torch.from_numpy(raw).permute(0, 3, 1, 2))
    assert blood.describe_task().startswith("Multi-class: each image is one of 8 classes (basophil, eosinophil,")


def test_summary_counts_add_up(blood, breast):
    df = blood.summary()
    assert list(df.columns) == ["split", "class", "count"] and len(df) == 3 * 8
    totals = df.groupby("split")["count"].sum().to_dict()
    assert totals == {"train": 11959, "val": 1712, "test": 3421}
    train = df[df["split"] == "train"].set_index("class")["count"]
    assert train.tolist() == torch.bincount(blood.labels["train"], minlength=8).tolist()
    assert breast.summary()["count"].sum() == 546 + 78 + 156


def test_names_sizes_urls():
    flags = list_medmnist()
    assert flags == [
        "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
        "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
    ]
    assert list_datasets() == flags and all(f in INFO for f in flags)
    assert MEDMNIST_SIZES == (28, 64, 128, 224)
    assert medmnist_filename("bloodmnist", 28) == "bloodmnist.npz"
    assert medmnist_filename("bloodmnist", 64) == "bloodmnist_64.npz"
    assert medmnist_url("bloodmnist", 224) == INFO["bloodmnist"]["url_224"]
    assert medmnist_md5("breastmnist") == INFO["breastmnist"]["MD5"] == "750601b1f35ba3300ea97c75c52ff8f6"


def test_unknown_flag_and_size():
    with pytest.raises(DataError, match=r"unknown MedMNIST dataset 'nomnist'; choose one of pathmnist, .*organsmnist"):
        load_medmnist("nomnist")
    with pytest.raises(DataError, match="unknown MedMNIST dataset 'organmnist3d'"):
        load_medmnist("organmnist3d")
    with pytest.raises(DataError, match=r"no 32 px version; choose a size of 28, 64, 128, 224"):
        load_medmnist("bloodmnist", size=32)


def test_load_dataset_dispatch(medmnist_dir, tmp_path):
    assert load_dataset("BreastMNIST", data_dir=medmnist_dir).images["val"].shape == (78, 1, 28, 28)
    with pytest.raises(DataError, match="neither a MedMNIST name nor an existing folder or .zip; give a MedMNIST name"):
        load_dataset("not-a-dataset")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="a file that is not a .zip"):
        load_dataset(tmp_path / "a.txt")


# --- missing files and the download ---------------------------------------------------------


def test_missing_file_tries_download_then_explains(tmp_path, monkeypatch):
    # Stands in for "no network" everywhere, so the test never downloads for real.
    calls = []

    def offline(self):
        calls.append((self.flag, self.size_flag))
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", offline)
    with pytest.raises(DataError) as err:
        load_medmnist("bloodmnist", size=64, data_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"bloodmnist_64.npz could not be downloaded into {tmp_path}; ")
    assert INFO["bloodmnist"]["url_64"] in msg and f"put it in {tmp_path}" in msg and "import" in msg
    assert calls == [("bloodmnist", "_64")]
    assert list(tmp_path.iterdir()) == []  # no scratch folder or partial file left


def test_missing_file_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", lambda self: pytest.fail("download attempted"))
    with pytest.raises(DataError, match=r"^breastmnist_128\.npz is not in .*; download it from https://zenodo\.org/.*breastmnist_128\.npz"):
        load_medmnist("breastmnist", size=128, data_dir=tmp_path, download=False)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError, match=f"pathmnist.npz is not in {tmp_path / 'env'}"):
        load_medmnist("pathmnist", download=False)


def test_download_lands_atomically(tmp_path, monkeypatch, medmnist_dir):
    def fake_download(self):
        shutil.copy(medmnist_dir / "breastmnist.npz", Path(self.root) / "breastmnist.npz")

    monkeypatch.setattr(medmnist.dataset.MedMNIST, "download", fake_download)
    ds = load_medmnist("breastmnist", data_dir=tmp_path / "d")
    assert ds.images["train"].shape == (546, 1, 28, 28)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["breastmnist.npz"]


# --- import with MD5 ------------------------------------------------------------------------


def test_import_good_file(tmp_path, medmnist_dir):
    dest = import_npz(medmnist_dir / "breastmnist.npz", data_dir=tmp_path / "d")
    assert dest == tmp_path / "d" / "breastmnist.npz"
    assert hashlib.md5(dest.read_bytes()).hexdigest() == INFO["breastmnist"]["MD5"]
    assert [p.name for p in dest.parent.iterdir()] == ["breastmnist.npz"]
    assert load_medmnist("breastmnist", data_dir=tmp_path / "d", download=False).images["test"].shape[0] == 156
    assert import_npz(dest, data_dir=tmp_path / "d") == dest  # importing it onto itself is harmless


def test_import_upload_bytes(tmp_path, medmnist_dir):
    data = (medmnist_dir / "breastmnist.npz").read_bytes()
    assert import_npz_bytes(data, "breastmnist (1).npz", data_dir=tmp_path) == tmp_path / "breastmnist.npz"
    assert import_npz_bytes(data, "download.npz", data_dir=tmp_path / "x") == tmp_path / "x" / "breastmnist.npz"


def test_import_tampered_copy_is_refused(tmp_path, medmnist_dir):
    data = bytearray((medmnist_dir / "breastmnist.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "breastmnist.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"does not match the official breastmnist\.npz \(MD5 [0-9a-f]{32}, expected 750601b1.*download it again from https://zenodo"):
        import_npz(bad, data_dir=tmp_path / "d")
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_import_misnamed_and_unknown_files(tmp_path, medmnist_dir):
    data = (medmnist_dir / "breastmnist.npz").read_bytes()
    with pytest.raises(DataError, match=r"named like bloodmnist_64\.npz but holds the official breastmnist\.npz; rename it"):
        import_npz_bytes(data, "bloodmnist_64.npz", data_dir=tmp_path)
    with pytest.raises(DataError, match="cannot tell which MedMNIST file stuff.npz is"):
        import_npz_bytes(b"not an npz", "stuff.npz", data_dir=tmp_path)
    with pytest.raises(DataError, match="3D MedMNIST dataset"):
        import_npz_bytes(b"x", "organmnist3d.npz", data_dir=tmp_path)
    with pytest.raises(DataError, match="is not a file"):
        import_npz(tmp_path / "missing.npz", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- hostile and synthetic .npz files --------------------------------------------------------


def arrays(n: int = 4, size: int = 28, channels: int = 1, labels=None) -> dict[str, np.ndarray]:
    shape = (n, size, size) if channels == 1 else (n, size, size, 3)
    y = np.array([[i % 2] for i in range(n)], dtype=np.uint8) if labels is None else labels
    out = {}
    for s in SPLITS:
        out[f"{s}_images"] = np.full(shape, 7, dtype=np.uint8)
        out[f"{s}_labels"] = y
    return out


def write_npz(folder: Path, name: str, **overrides) -> Path:
    content = arrays()
    content.update(overrides)
    content = {k: v for k, v in content.items() if v is not None}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / name, **content)
    return folder / name


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"val_labels": None}, r"breastmnist\.npz lacks val_labels \(it has test_images, test_labels, train_images, train_labels, val_images\)"),
        ({"train_images": np.zeros((4, 28, 28), np.float32)}, r"train_images has type float32, expected uint8 pixels"),
        ({"test_images": np.zeros((4, 32, 32), np.uint8)}, r"test_images has shape \(4, 32, 32\), expected \(N, 28, 28\) for 1-channel 28 px images"),
        ({"val_images": np.zeros((4, 28, 28, 3), np.uint8)}, r"val_images has shape \(4, 28, 28, 3\), expected \(N, 28, 28\)"),
        ({"train_labels": np.array([[0], [1], [2], [1]])}, r"train_labels has labels from 0 to 2, but breastmnist has 2 classes \(0 to 1\)"),
        ({"train_labels": np.array([[0], [-1], [0], [1]], np.int8)}, r"train_labels has labels from -1 to 1"),
        ({"test_labels": np.zeros((4, 1), np.float64)}, r"test_labels has type float64, expected whole-number class labels"),
        ({"val_labels": np.zeros((3, 1), np.uint8)}, r"val_labels has shape \(3, 1\), expected \(4, 1\): one label per image"),
        ({"train_labels": np.array([[0], [1], None, [1]], dtype=object)}, r"train_labels holds Python objects, which are never loaded for safety"),
    ],
)
def test_hostile_npz_is_refused(tmp_path, overrides, message):
    write_npz(tmp_path, "breastmnist.npz", **overrides)
    with pytest.raises(DataError, match=message):
        load_medmnist("breastmnist", data_dir=tmp_path, download=False)


def test_not_an_npz(tmp_path):
    (tmp_path / "breastmnist.npz").write_bytes(b"garbage" * 100)
    with pytest.raises(DataError, match=r"breastmnist\.npz is not a readable \.npz file"):
        load_medmnist("breastmnist", data_dir=tmp_path, download=False)
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(tmp_path / "breastmnist.npz")
    with pytest.raises(DataError, match="holds a single array"):
        load_medmnist("breastmnist", data_dir=tmp_path, download=False)


def test_synthetic_file_of_the_right_form_loads_with_a_note(tmp_path):
    write_npz(tmp_path, "breastmnist_64.npz", **arrays(size=64))
    ds = load_medmnist("breastmnist", size=64, data_dir=tmp_path, download=False)
    assert ds.name == "breastmnist_64" and ds.images["train"].shape == (4, 1, 64, 64)
    assert "train has 4 images; the official breastmnist has 546" in ds.report.notes


def test_multi_label_and_ordinal_semantics(tmp_path):
    y = np.zeros((4, 14), np.uint8)
    y[0, [0, 3]] = 1
    y[2, 3] = 1
    write_npz(tmp_path, "chestmnist.npz", **arrays(labels=y))
    chest = load_medmnist("chestmnist", data_dir=tmp_path, download=False)
    assert chest.task == "multi-label" and chest.num_classes == 14
    assert chest.labels["train"].dtype == torch.float32 and chest.labels["train"].shape == (4, 14)
    counts = chest.summary().query("split == 'train'").set_index("class")["count"]
    assert counts["atelectasis"] == 1 and counts["infiltration"] == 2 and counts.sum() == 3
    assert chest.describe_task().startswith("Multi-label: each image can have any of 14 findings, each yes or no")
    y[1, 5] = 2
    write_npz(tmp_path / "bad", "chestmnist.npz", **arrays(labels=y))
    with pytest.raises(DataError, match="expected only 0 and 1"):
        load_medmnist("chestmnist", data_dir=tmp_path / "bad", download=False)

    write_npz(tmp_path, "retinamnist.npz", **arrays(channels=3, labels=np.array([[0], [4], [2], [1]])))
    retina = load_medmnist("retinamnist", data_dir=tmp_path, download=False)
    assert retina.task == "ordinal" and retina.channels == 3 and retina.labels["val"].tolist() == [0, 4, 2, 1]
    assert retina.describe_task() == "Ordinal: each image gets one of 5 ordered grades, from 0 to 4"
