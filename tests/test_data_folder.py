"""Image folders and zips, made in the test with PIL: layouts, odd files, splits, hostile zips."""

from __future__ import annotations

import io
import stat
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import extract_zip, load_dataset, load_image_folder
from core.data import safe_zip
from core.errors import ConfigError, DataError


def save(path: Path, img: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def flat(value: int, mode: str = "L", size=(20, 20)) -> Image.Image:
    """A constant image whose value identifies it after import."""
    return Image.new(mode, size, value if mode == "L" else (value, value, value))


def make_classes(root: Path, counts: dict[str, int], start: int = 0) -> dict[int, str]:
    """One constant grayscale PNG per image, with a unique value; returns value -> class."""
    owner, value = {}, start
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            save(root / name / f"img{i:03d}.png", flat(value))
            owner[value] = name
            value += 1
    return owner


def values(ds, split: str) -> list[int]:
    """The identifying value of every image in a split (top-left pixel)."""
    return ds.images[split][:, 0, 0, 0].tolist()


def zip_tree(root: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(root).as_posix())
    return dest


# --- folders --------------------------------------------------------------------------------


def test_folder_with_odd_files(tmp_path):
    root = tmp_path / "scans"
    make_classes(root, {"benign": 10, "malignant": 10})
    (root / "malignant" / "broken.png").write_bytes(b"not a png at all")
    (root / "benign" / "notes.txt").write_text("hello")
    (root / "benign" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "empty_class").mkdir()
    (root / "loose.png").write_bytes(b"x")

    ds = load_image_folder(root, size=28)

    assert ds.source == "folder" and ds.name == "scans"
    assert ds.class_names == ["benign", "malignant"] and ds.task == "binary"
    assert ds.channels == 1 and ds.image_size == 28
    assert sum(ds.images[s].shape[0] for s in ds.splits) == 20
    assert all(ds.images[s].dtype == torch.uint8 for s in ds.splits)
    skipped = dict(ds.report.files_skipped)
    assert "is not an image" in skipped["malignant/broken.png"]
    assert "not an image file (extension .txt)" in skipped["benign/notes.txt"]
    assert skipped["loose.png"] == "not inside a class folder"
    assert not any(".DS_Store" in f for f in skipped)
    assert "class folder 'empty_class' is empty and was skipped" in ds.report.notes
    assert len(ds.report.files_read) == 20
    assert ds.describe_task() == "Binary: each image is one of two classes (benign, malignant)"


def test_single_class_is_refused(tmp_path):
    make_classes(tmp_path / "d", {"only": 3})
    (tmp_path / "d" / "other").mkdir()  # empty: does not count
    with pytest.raises(DataError, match=r"^found only one class 'only'; a classifier needs at least two sub-folders of images$"):
        load_image_folder(tmp_path / "d")


def test_no_class_folders_is_refused(tmp_path):
    root = tmp_path / "flat"
    save(root / "a.png", flat(1))
    with pytest.raises(DataError, match="has no class folders; put the images of each class in its own sub-folder"):
        load_image_folder(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_image_folder(tmp_path / "empty")


def test_class_folders_without_readable_images(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "a" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"^no class folder of d holds a readable image \(1 file\(s\) skipped, e\.g\. a/x\.png\); add PNG"):
        load_image_folder(tmp_path / "d")


def test_missing_path_and_bad_settings(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="neither a folder nor a .zip"):
        load_image_folder(tmp_path / "file.txt")
    make_classes(tmp_path / "ok", {"a": 2, "b": 2})
    with pytest.raises(ConfigError, match="split"):
        load_image_folder(tmp_path / "ok", split=(0, 0.5, 0.5))
    with pytest.raises(ConfigError, match="channels"):
        load_image_folder(tmp_path / "ok", channels=2)


def test_mixed_sizes_and_modes_give_rgb(tmp_path):
    root = tmp_path / "mixed"
    save(root / "a" / "gray.png", Image.new("L", (40, 30), 100))
    save(root / "a" / "red.jpg", Image.new("RGB", (28, 28), (255, 0, 0)))
    save(root / "a" / "alpha.png", Image.new("RGBA", (50, 50), (0, 0, 255, 255)))
    pal = Image.new("P", (33, 17), 0)
    pal.putpalette([0, 200, 0] + [0] * 765)
    save(root / "b" / "palette.png", pal)
    save(root / "b" / "deep.png", Image.fromarray(np.full((25, 25), 4000, dtype=np.uint16)))
    save(root / "b" / "bits.bmp", Image.new("1", (31, 31), 1))
    save(root / "b" / "scan.tif", Image.new("L", (64, 64), 50))

    ds = load_image_folder(root, size=32, split=(1, 0, 0))
    x, y = ds.images["train"], ds.labels["train"]
    assert ds.channels == 3 and x.shape == (7, 3, 32, 32) and x.dtype == torch.uint8
    assert ds.images["val"].shape == (0, 3, 32, 32)
    pixels = {tuple(x[i, :, 16, 16].tolist()) for i in range(7)}
    assert {(100, 100, 100), (0, 0, 255), (0, 200, 0), (255, 255, 255), (50, 50, 50), (0, 0, 0)} <= pixels
    red = [p for p in pixels if p[0] > 200 and p[1] < 50]
    assert len(red) == 1  # the JPEG, within compression error of pure red
    assert torch.bincount(y).tolist() == [3, 4]
    assert any("the val split is empty" in n for n in ds.report.notes)

    forced = load_image_folder(root, size=16, channels=1, split=(1, 0, 0))
    assert forced.channels == 1 and forced.images["train"].shape == (7, 1, 16, 16)


def test_grayscale_content_gives_one_channel(tmp_path):
    root = tmp_path / "gray"
    save(root / "a" / "l.png", Image.new("L", (20, 20), 10))
    save(root / "a" / "rgb_but_gray.png", Image.new("RGB", (20, 20), (30, 30, 30)))
    save(root / "b" / "deep.png", Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20)))
    save(root / "b" / "bits.png", Image.new("1", (20, 20), 0))
    ds = load_image_folder(root, size=8, split=(1, 0, 0))
    assert ds.channels == 1
    corner = sorted(ds.images["train"][:, 0, 0, 0].tolist())
    assert corner[0] == 0 and 10 in corner and 30 in corner  # 1-bit black, L 10, RGB-gray 30
    assert load_image_folder(root, size=8, channels=3, split=(1, 0, 0)).images["train"].shape == (4, 3, 8, 8)


def test_split_folders_are_honoured(tmp_path):
    root = tmp_path / "split"
    owner = make_classes(root / "train", {"a": 6, "b": 5}, start=0)
    val = make_classes(root / "val", {"a": 2, "b": 2}, start=100)
    test = make_classes(root / "test", {"a": 3, "b": 1}, start=200)
    ds = load_image_folder(root, size=8)
    assert sorted(values(ds, "train")) == sorted(owner)
    assert sorted(values(ds, "val")) == sorted(val)
    assert sorted(values(ds, "test")) == sorted(test)
    for split, truth in (("train", owner), ("val", val), ("test", test)):
        names = [ds.class_names[i] for i in ds.labels[split].tolist()]
        assert names == [truth[v] for v in values(ds, split)]
    assert "used the train/val/test folders as the splits" in ds.report.notes


def test_train_and_test_only_carves_val_from_train(tmp_path):
    root = tmp_path / "tt"
    train = make_classes(root / "train", {"a": 20, "b": 10}, start=0)
    test = make_classes(root / "test", {"a": 4, "b": 4}, start=100)
    ds = load_image_folder(root, size=8, seed=3)
    assert sorted(values(ds, "test")) == sorted(test)
    tr, va = set(values(ds, "train")), set(values(ds, "val"))
    assert not tr & va and tr | va == set(train)
    # val is 0.15 / 0.85 of train, per class: 20 -> 4 (3.5 rounds by largest remainder), 10 -> 2
    assert torch.bincount(ds.labels["val"], minlength=2).tolist() == [4, 2]
    assert any("val carved from train" in n for n in ds.report.notes)


def test_split_folder_names_mixed_with_classes_are_refused(tmp_path):
    make_classes(tmp_path / "m" / "train", {"a": 2, "b": 2})
    make_classes(tmp_path / "m", {"cats": 2})
    with pytest.raises(DataError, match=r"mixes split folders \(train\) with other folders \(cats\)"):
        load_image_folder(tmp_path / "m")


def test_stratified_split_proportions_and_seed(tmp_path):
    root = tmp_path / "strat"
    make_classes(root, {"a": 40, "b": 20})
    one = load_image_folder(root, size=8, split=(0.5, 0.25, 0.25), seed=7)
    for split, want in (("train", [20, 10]), ("val", [10, 5]), ("test", [10, 5])):
        assert torch.bincount(one.labels[split], minlength=2).tolist() == want
    assert sorted(sum((values(one, s) for s in one.splits), [])) == list(range(60))
    again = load_image_folder(root, size=8, split=(0.5, 0.25, 0.25), seed=7)
    other = load_image_folder(root, size=8, split=(0.5, 0.25, 0.25), seed=8)
    for s in one.splits:
        assert torch.equal(one.images[s], again.images[s]) and torch.equal(one.labels[s], again.labels[s])
    assert values(one, "val") != values(other, "val")
    assert torch.bincount(other.labels["val"], minlength=2).tolist() == [10, 5]
    default = load_image_folder(root, size=8)  # 70/15/15 -> a: 28/6/6, b: 14/3/3
    assert [default.images[s].shape[0] for s in default.splits] == [42, 9, 9]


def test_wrapping_folder_and_nested_images(tmp_path):
    make_classes(tmp_path / "outer" / "my data", {"x": 3, "y": 3})
    save(tmp_path / "outer" / "my data" / "x" / "patient7" / "deep.png", flat(99))
    ds = load_image_folder(tmp_path / "outer", size=8, split=(1, 0, 0))
    assert ds.class_names == ["x", "y"] and ds.images["train"].shape[0] == 7


def test_linked_files_and_folders_of_a_local_folder_are_followed(tmp_path):
    store = tmp_path / "store"
    make_classes(store, {"a": 2, "b": 2})
    root = tmp_path / "linked"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.png").symlink_to(store / "a" / "img000.png")
    (root / "a" / "gone.png").symlink_to(store / "a" / "missing.png")
    (root / "b").symlink_to(store / "b", target_is_directory=True)
    ds = load_image_folder(root, size=8, split=(1, 0, 0))
    assert ds.class_names == ["a", "b"] and ds.images["train"].shape[0] == 3
    assert dict(ds.report.files_skipped) == {"a/gone.png": "not a regular file (a broken link?)"}


def test_three_classes_natural_order(tmp_path):
    make_classes(tmp_path / "g", {"grade10": 2, "grade2": 2, "grade1": 2})
    ds = load_image_folder(tmp_path / "g", size=8, split=(1, 0, 0))  # 2 per class: too few to split
    assert ds.class_names == ["grade1", "grade2", "grade10"] and ds.task == "multi-class"


def test_progress_callback(tmp_path):
    make_classes(tmp_path / "p", {"a": 2, "b": 3})
    seen = []
    load_image_folder(tmp_path / "p", size=8, split=(1, 0, 0), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]


# --- zips -----------------------------------------------------------------------------------


def test_zip_import_matches_folder(tmp_path, monkeypatch):
    root = tmp_path / "src"
    make_classes(root, {"a": 5, "b": 6})
    archive = zip_tree(root, tmp_path / "cells.zip", prefix="cells/")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/cells/a/._img000.png", b"resource fork")
        zf.writestr("cells/.DS_Store", b"\x00")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ds = load_image_folder(archive, size=8, seed=1)
    folder = load_image_folder(root, size=8, seed=1)
    assert ds.name == "cells" and ds.class_names == ["a", "b"]
    for s in ds.splits:
        assert torch.equal(ds.images[s], folder.images[s]) and torch.equal(ds.labels[s], folder.labels[s])
    assert not ds.report.files_skipped
    assert list(scratch.iterdir()) == []  # the extraction folder is gone
    assert load_dataset(archive, size=8, seed=1).class_names == ["a", "b"]


def hostile_zip(path: Path, name: str, data: bytes = b"x", *, symlink: bool = False, first_ok: bool = True) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        if first_ok:
            zf.writestr("a/ok.png", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return path


def assert_nothing_written(parent: Path) -> None:
    """Only the (empty) target folder and the zip itself may exist under parent."""
    leftovers = sorted(p.relative_to(parent).as_posix() for p in parent.rglob("*"))
    assert leftovers in ([], ["evil.zip"], ["evil.zip", "target"], ["target"]), leftovers


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("../evil.png", {}, "points outside the folder"),
        ("a/../../evil.png", {}, "points outside the folder"),
        ("..\\evil.png", {}, "points outside the folder"),
        ("/tmp/evil.png", {}, "absolute path"),
        ("C:/evil.png", {}, "absolute path"),
        ("a/link.png", {"symlink": True, "data": b"/etc/passwd"}, "symbolic link"),
    ],
)
def test_hostile_zip_entries_are_refused(tmp_path, name, kwargs, message):
    parent = tmp_path / "box"
    parent.mkdir()
    archive = hostile_zip(parent / "evil.zip", name, **kwargs)
    with zipfile.ZipFile(archive) as zf:
        assert name in zf.namelist()  # the archive really holds the hostile name
    with pytest.raises(DataError, match=message):
        extract_zip(archive, parent / "target")
    assert_nothing_written(parent)
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()
    with pytest.raises(DataError, match=message):
        load_image_folder(archive)


def _patch_central(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    pos = 0
    while (pos := out.find(b"PK\x01\x02", pos)) != -1:
        struct.pack_into(fmt, out, pos + offset, value)
        pos += 4
    return bytes(out)


def test_zip_bomb_by_declared_size_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a/1.png", b"x" * 100)
        zf.writestr("b/1.png", b"x" * 100)
    # Central directory: compressed size at +20, uncompressed at +24; declare 2 x 1.9 GB.
    data = _patch_central(_patch_central(buf.getvalue(), 20, "<I", 1_900_000_000), 24, "<I", 1_900_000_000)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sum(i.file_size for i in zf.infolist()) == 3_800_000_000
    (tmp_path / "box").mkdir()
    with pytest.raises(DataError, match=r"would expand to 3\.5 GB, more than the limit of 2\.0 GB"):
        extract_zip(data, tmp_path / "box" / "target")
    assert_nothing_written(tmp_path / "box")


def test_zip_bomb_by_ratio_is_refused(tmp_path):
    archive = tmp_path / "box" / "evil.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/ok.png", b"fine")
        zf.writestr("a/zeros.png", bytes(5 * 1024**2))
    assert archive.stat().st_size < 50_000
    with pytest.raises(DataError, match=r"possible zip bomb: 'a/zeros\.png' expands \d+ times \(limit 200\)"):
        extract_zip(archive, tmp_path / "box" / "target")
    assert_nothing_written(tmp_path / "box")


def test_header_that_lies_about_size_is_caught_while_extracting(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a/1.png", b"y" * 5000)
    data = _patch_central(buf.getvalue(), 24, "<I", 10)  # claims 10 bytes, holds 5000
    with pytest.raises(DataError, match="a/1.png"):
        extract_zip(data, tmp_path / "target")
    assert list((tmp_path / "target").rglob("*.png")) == []


def test_too_many_entries_empty_and_not_a_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_zip, "MAX_ENTRIES", 10)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(11):
            zf.writestr(f"a/{i}.png", b"x")
    with pytest.raises(DataError, match="11 entries, more than the limit of 10"):
        extract_zip(many, tmp_path / "t1")
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(DataError, match="empty.zip is empty"):
        load_image_folder(empty)
    fake = tmp_path / "fake.zip"
    fake.write_text("just text")
    with pytest.raises(DataError, match="fake.zip is not a valid zip file"):
        load_image_folder(fake)


def test_password_protected_zip_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", b"x")
    data = _patch_central(buf.getvalue(), 8, "<H", 0x1)  # general purpose flag: encrypted
    with pytest.raises(DataError, match="password-protected"):
        extract_zip(data, tmp_path / "t")


def test_extract_zip_writes_only_inside_target(tmp_path):
    root = tmp_path / "src"
    make_classes(root, {"a": 2, "b": 1})
    archive = zip_tree(root, tmp_path / "ok.zip", prefix="top/")
    files = extract_zip(archive, tmp_path / "out")
    assert sorted(f.relative_to(tmp_path / "out").as_posix() for f in files) == [
        "top/a/img000.png",
        "top/a/img001.png",
        "top/b/img000.png",
    ]
    assert all(f.read_bytes() == (root / f.relative_to(tmp_path / "out" / "top")).read_bytes() for f in files)
