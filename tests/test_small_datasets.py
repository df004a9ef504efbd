"""Image folders too small to split are refused before training, with the count that works.

Before: 2 images per class trained and then failed with an IndexError, and 500 classes x 3
images left the test split empty ("Scores must be a non-empty 2-D array ... (0, 0)").
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import load_image_folder
from core.data.split_check import check_folder_splittable, largest_remainder, min_per_class
from core.errors import DataError

REPO = Path(__file__).resolve().parent.parent


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (6, 6), value).save(buf, "PNG")
    return buf.getvalue()


def make_folder(root: Path, classes: dict[str, int]) -> Path:
    """One sub-folder per class with ``n`` tiny PNGs each (a different grey per class)."""
    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        data = _png(k % 256)
        for i in range(n):
            (root / name / f"{i}.png").write_bytes(data)
    return root


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory) -> Path:
    """500 classes x 3 images: val gets one per class, test none."""
    return make_folder(tmp_path_factory.mktemp("many") / "many", {f"c{i:03d}": 3 for i in range(500)})


def test_minimum_follows_the_split_arithmetic():
    # 70/15/15: 4 images give 3/1/0 (no test image), 5 give 3/1/1, and every larger count works.
    assert largest_remainder(4, (0.7, 0.15, 0.15)) == [3, 1, 0]
    assert largest_remainder(5, (0.7, 0.15, 0.15)) == [3, 1, 1]
    assert min_per_class((0.7, 0.15, 0.15)) == 5
    assert min_per_class((0.5, 0.25, 0.25)) == 3
    assert min_per_class((1.0, 0.0, 0.0)) == 1  # empty val and test were asked for
    for fractions in ((0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.98, 0.01, 0.01), (0.6, 0.4)):
        need = min_per_class(fractions)
        assert any(c == 0 for c in largest_remainder(need - 1, fractions))
        for n in range(need, need + 300):
            assert all(c >= 1 for c in largest_remainder(n, fractions)), (fractions, n)


def test_two_images_per_class_is_refused_at_load(tmp_path):
    root = make_folder(tmp_path / "tiny", {"benign": 2, "malignant": 2})
    with pytest.raises(DataError) as err:
        load_image_folder(root, size=8)
    assert str(err.value) == (
        "class 'benign' has 2 images; each class needs at least 5 so that training, validation and test "
        "each get one: add 3 more (2 of 2 classes are short; 6 more images in all)"
    )
    one = make_folder(tmp_path / "one", {"a": 1, "b": 7})
    with pytest.raises(DataError, match=r"^class 'a' has 1 image; each class needs at least 5 .* add 4 more$"):
        load_image_folder(one, size=8)


def test_five_per_class_is_the_smallest_that_loads(tmp_path):
    ds = load_image_folder(make_folder(tmp_path / "five", {"a": 5, "b": 5}), size=8)
    counts = ds.summary().groupby("split")["count"].apply(list).to_dict()
    assert counts == {"test": [1, 1], "train": [3, 3], "val": [1, 1]}


def test_unreadable_files_do_not_count(tmp_path):
    root = make_folder(tmp_path / "broken", {"a": 5, "b": 5})
    (root / "a" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"^class 'a' has 4 images; each class needs at least 5 .*add 1 more$"):
        load_image_folder(root, size=8)


def test_many_classes_with_three_images_are_refused(many_classes):
    with pytest.raises(DataError) as err:
        load_image_folder(many_classes, size=8)
    assert str(err.value) == (
        "class 'c000' has 3 images; each class needs at least 5 so that training, validation and test "
        "each get one: add 2 more (500 of 500 classes are short; 1000 more images in all)"
    )


def test_split_folders_too_small_to_carve_or_empty(tmp_path):
    carved = tmp_path / "carved"
    make_folder(carved / "train", {"a": 2, "b": 9})
    make_folder(carved / "val", {"a": 1, "b": 1})
    # test/ is carved from train/ in the proportions 70:15, so 3 images per class are needed.
    with pytest.raises(DataError, match=r"^class 'a' has 2 images in train/; each class needs at least 3 so that "
                                        r"training and test each get one: add 1 more$"):
        load_image_folder(carved, size=8)
    empty = tmp_path / "empty"
    make_folder(empty / "train", {"a": 4, "b": 4})
    make_folder(empty / "test", {"a": 1, "b": 1})
    (empty / "val").mkdir()
    with pytest.raises(DataError, match=r"^the val/ folder of empty has no images, so there is nothing to validate on"):
        load_image_folder(empty, size=8)
    lopsided = tmp_path / "lopsided"
    make_folder(lopsided / "train", {"a": 4})
    make_folder(lopsided / "val", {"a": 1, "b": 1})
    make_folder(lopsided / "test", {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"^class 'b' has no images in the train/ folder of lopsided"):
        load_image_folder(lopsided, size=8)


def test_config_check_refuses_without_decoding(tmp_path, many_classes):
    from core.train import make_config, validate

    tiny = make_folder(tmp_path / "tiny", {"benign": 2, "malignant": 2})
    for folder, text in ((tiny, "class 'benign' has 2 images"), (many_classes, "class 'c000' has 3 images")):
        with pytest.raises(DataError, match=f"^{text}; each class needs at least 5"):
            validate(make_config(str(folder), "bloodcnn", "default", image_size=28, epochs=1))
    # Files are counted by name and never decoded, so junk named .png counts here (load refuses it).
    junk = make_folder(tmp_path / "junk", {"a": 5, "b": 5})
    (junk / "a" / "0.png").write_bytes(b"junk")
    check_folder_splittable(str(junk))
    check_folder_splittable("bloodmnist")  # official splits: nothing to check


def _train(dataset: Path, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(dataset), "--model", "bloodcnn",
                           "--epochs", "1", "--size", "28", "--runs-dir", str(runs)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("shape", ["two_per_class", "many_classes"])
def test_cli_train_refuses_before_making_a_run(shape, tmp_path, many_classes):
    folder = make_folder(tmp_path / "tiny", {"benign": 2, "malignant": 2}) if shape == "two_per_class" else many_classes
    runs = tmp_path / "runs"
    proc = _train(folder, runs)
    assert proc.returncode == 2, proc.stderr
    want = "class 'benign' has 2 images" if shape == "two_per_class" else "class 'c000' has 3 images"
    assert f"error: {want}; each class needs at least 5 so that training, validation and test each get one" in proc.stderr
    assert "Traceback" not in proc.stderr and "IndexError" not in proc.stderr
    assert not runs.exists() or not any(runs.glob("*/meta.json"))


def test_cli_trains_on_the_smallest_folder_that_works(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "five"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / name / f"{i}.png")
    runs = tmp_path / "runs"
    proc = _train(root, runs)
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout


# --- class names too long for a file system (item 9) -------------------------------------------


def _zip_with_class(name: str) -> bytes:
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w") as zf:
        for cls in (name, "normal"):
            for i in range(5):
                zf.writestr(f"scans/{cls}/{i}.png", _png(i))
    return buf.getvalue()


def test_a_300_character_class_name_is_refused_as_too_long(tmp_path):
    from core.data import extract_zip

    long_name = "x" * 300
    (tmp_path / "long.zip").write_bytes(_zip_with_class(long_name))
    want = ("long.zip has a file or folder name of 300 characters ('xxxxxxxxxxxxxxxxxxxxxxxx...'), more than the "
            "255 bytes a file or folder name may have; shorten that name and zip the folder again")
    with pytest.raises(DataError) as err:
        extract_zip(tmp_path / "long.zip", tmp_path / "out")
    assert str(err.value) == want and "clashes" not in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # refused before writing
    with pytest.raises(DataError, match=r"^long.zip has a file or folder name of 300 characters"):
        load_image_folder(tmp_path / "long.zip", size=8)
    # Bytes count, not characters: 150 accented letters are 300 bytes in UTF-8.
    (tmp_path / "accents.zip").write_bytes(_zip_with_class("é" * 150))
    with pytest.raises(DataError, match=r"name of 150 characters \(300 bytes in UTF-8\)"):
        extract_zip(tmp_path / "accents.zip", tmp_path / "out2")
    (tmp_path / "ok.zip").write_bytes(_zip_with_class("y" * 255))  # exactly the limit works
    assert load_image_folder(tmp_path / "ok.zip", size=8).class_names == ["normal", "y" * 255]


def test_datasets_page_says_the_class_name_is_too_long():
    from test_pages import open_page

    at = open_page("datasets")
    try:
        at.file_uploader[1].set_value(("scans.zip", _zip_with_class("z" * 300), "application/zip")).run()
        assert not at.exception
        errors = "\n".join(str(e.value) for e in at.error)
        assert "more than the 255 bytes a file or folder name may have; shorten that name" in errors
        assert "clashes" not in errors and "Traceback" not in errors
    finally:
        from studio import ui

        ui._runner(ui._root()).stop()
