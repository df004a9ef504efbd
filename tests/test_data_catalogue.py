"""The data catalogue (issue 14): MedMNIST facts from one reader of ``medmnist.INFO``, which
sizes are on disk, image counts without decoding, the uploads store, and the caps that the
callers now pass to the zip readers instead of core.data asking the limits policy."""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

import pytest

from core.data import (count_dataset_images, extract_zip, list_datasets, load_dataset, medmnist_facts,
                       medmnist_on_disk)
from core.data.catalogue import load_dataset as catalogue_load_dataset
from core.data.inputs import iter_image_sources
from core.data.safe_zip import MAX_ENTRIES, entry_cap
from core.data.uploads import extract_upload, list_uploads, owner_folder, uploads_root, zip_upload_folder
from core.errors import ConfigError, DataError, StudioError
from core.limits import Limits, check_dataset_size, check_upload_count
from helpers_runs import write_dataset_folder

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- MedMNIST facts
def test_facts_of_three_datasets():
    chest = medmnist_facts("ChestMNIST ")
    assert (chest.flag, chest.task, chest.medmnist_task) == ("chestmnist", "multi-label", "multi-label, binary-class")
    assert (chest.num_classes, chest.channels) == (14, 1)
    assert chest.class_names[:2] == ("atelectasis", "cardiomegaly") and chest.class_names[-1] == "hernia"
    assert dict(chest.n_samples) == {"train": 78468, "val": 11219, "test": 22433}
    assert chest.n_images == 112_120 and chest.python_class == "ChestMNIST"
    retina = medmnist_facts("retinamnist")
    assert (retina.task, retina.class_names, retina.channels) == ("ordinal", ("0", "1", "2", "3", "4"), 3)
    blood = medmnist_facts("bloodmnist")
    assert (blood.task, blood.num_classes, blood.channels) == ("multi-class", 8, 3)
    assert blood.about.startswith("The BloodMNIST") and blood.about.endswith(".")


def test_unknown_flag_names_the_valid_ones():
    with pytest.raises(DataError, match="unknown MedMNIST dataset 'organmnist3d'; choose one of pathmnist, chestmnist"):
        medmnist_facts("organmnist3d")


def test_sizes_on_disk(tmp_path):
    (tmp_path / "bloodmnist.npz").write_bytes(b"x")
    (tmp_path / "bloodmnist_64.npz").write_bytes(b"x")
    (tmp_path / "breastmnist_224.npz").write_bytes(b"x")
    (tmp_path / "pathmnist.npz").mkdir()  # a folder with a file's name is not a file
    (tmp_path / "bloodmnist_32.npz").write_bytes(b"x")  # no such MedMNIST size
    assert medmnist_on_disk(tmp_path) == {"breastmnist": [224], "bloodmnist": [28, 64]}
    assert list(medmnist_on_disk(tmp_path)) == ["breastmnist", "bloodmnist"], "medmnist's order of flags"
    assert medmnist_on_disk(tmp_path / "missing") == {}


def test_medmnist_info_is_read_in_one_module():
    readers = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "core").rglob("*.py")
                     if "INFO" in p.read_text(encoding="utf-8") and "from medmnist import INFO" in p.read_text(encoding="utf-8"))
    assert readers == ["core/data/medmnist_info.py"]


def test_dataset_types_import_no_source():
    tree = ast.parse((ROOT / "core" / "data" / "dataset.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.endswith("_source")}, imported
    assert "core.limits" not in imported


# ---------------------------------------------------------------------------- the catalogue
def test_catalogue_is_what_core_data_exports():
    assert load_dataset is catalogue_load_dataset
    assert list_datasets()[0] == "pathmnist" and len(list_datasets()) == 12
    with pytest.raises(DataError, match=r"'/no/such/folder' is neither a MedMNIST name nor an existing folder or \.zip"):
        load_dataset("/no/such/folder")


def test_counts_without_decoding(tmp_path):
    assert count_dataset_images("bloodmnist") == 17_092 == medmnist_facts("bloodmnist").n_images
    folder = write_dataset_folder(tmp_path / "imgs", {"train": 6, "val": 2, "test": 2})
    (folder / "train" / "notes.txt").write_text("not an image")
    assert count_dataset_images(str(folder)) == 10
    assert count_dataset_images(str(folder), stop_after=4) == 4
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*.png"))[:7]:
            zf.write(f, f.relative_to(folder).as_posix())
    assert count_dataset_images(str(archive)) == 7
    assert count_dataset_images(str(archive), stop_after=3) == 3
    assert count_dataset_images(str(tmp_path / "nothing")) is None


# ---------------------------------------------------------------------------- limits policy, counts given
def test_dataset_size_is_judged_from_the_count_it_is_given():
    lim = Limits(demo=True, max_images=100)
    check_dataset_size("bloodmnist", 100, lim)
    check_dataset_size("bloodmnist", None, lim)  # unknown: loading will say what is wrong
    check_dataset_size("bloodmnist", 10**6, Limits())  # no limit outside the demo
    with pytest.raises(ConfigError, match="bloodmnist has 17,092 images and this demo trains on at most 100"):
        check_dataset_size("bloodmnist", 17_092, lim)
    with pytest.raises(ConfigError, match="imgs has more than 100 images"):
        check_dataset_size("/data/uploads/imgs", 101, lim)


def test_upload_count_names_what_was_imported():
    check_upload_count(1, "datasets", Limits(demo=True, max_uploads=2))
    check_upload_count(99, "datasets", Limits())
    with pytest.raises(StudioError, match="you have imported 2 datasets, the most this demo keeps per visitor"):
        check_upload_count(2, "datasets", Limits(demo=True, max_uploads=2))


# ---------------------------------------------------------------------------- caps as arguments
def _zip_of(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            zf.writestr(f"a/{i}.png", b"x")
    return buf.getvalue()


def test_zip_caps_come_from_the_caller(tmp_path):
    assert entry_cap(None) == (MAX_ENTRIES, "")
    assert entry_cap(10) == (10, " in this demo")
    assert entry_cap(MAX_ENTRIES + 1) == (MAX_ENTRIES, "")
    data = _zip_of(4)
    assert len(extract_zip(data, tmp_path / "free")) == 4
    with pytest.raises(DataError, match="the zip has 4 entries, more than the limit of 3 in this demo"):
        extract_zip(data, tmp_path / "capped", max_entries=3)
    assert not any((tmp_path / "capped").iterdir())


def test_predict_inputs_take_the_zip_cap(tmp_path):
    archive = tmp_path / "many.zip"
    archive.write_bytes(_zip_of(3))
    items = list(iter_image_sources([archive], max_entries=2))
    assert len(items) == 1 and items[0][1] is None
    assert "many.zip has 3 entries, more than the limit of 2" in items[0][2]
    assert [name for name, _, _ in iter_image_sources([archive])] == [f"many.zip:a/{i}.png" for i in range(3)]


# ---------------------------------------------------------------------------- uploads store
def test_owner_folders_are_plain_names():
    assert owner_folder("ann_01") == "ann_01"
    mail = owner_folder("ann.lee@example.org")
    assert mail.startswith("ann-lee-example-org-") and len(mail) == len("ann-lee-example-org-") + 10
    assert "." not in mail and "/" not in mail and owner_folder("../..").startswith("user-")


def test_upload_folders_extract_whole_or_not_at_all(tmp_path):
    data = _zip_of(3)
    target = zip_upload_folder(uploads_root(tmp_path, "ann"), "My scans (1).zip", data)
    assert target.parent == tmp_path / "uploads" / "ann" and target.name.startswith("My-scans-1-")
    assert target == zip_upload_folder(uploads_root(tmp_path, "ann"), "My scans (1).zip", data), "same bytes, same folder"
    with pytest.raises(DataError, match="more than the limit of 2 in this demo"):
        extract_upload(data, target, max_entries=2)
    assert not target.exists() and list(target.parent.iterdir()) == [], "no half folder, no staging left"
    assert extract_upload(data, target) == target
    assert sorted(p.name for p in (target / "a").iterdir()) == ["0.png", "1.png", "2.png"]
    other = extract_upload(_zip_of(2), zip_upload_folder(uploads_root(tmp_path, "bob"), "b.zip", _zip_of(2)))
    assert list_uploads(tmp_path, "ann", private=True) == [target]
    assert list_uploads(tmp_path, None, private=True) == []
    assert set(list_uploads(tmp_path, None, private=False)) == {target, other}
