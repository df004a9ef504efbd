"""Datasets bigger than memory: converted once to .npy, read a batch at a time, trained on."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from core.data import SPLITS, load_medmnist
from core.data import npy_cache
from core.data.ondisk import DiskImages
from core.errors import DataError
from core.train.trainer import make_batches

ON_DISK = "0.01"  # MB: every test file is bigger than this
IN_MEMORY = "1000"


def _write_npz(path, sizes=(40, 12, 10), size=28, channels=3, k=9, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(SPLITS, sizes):
        shape = (n, size, size, channels) if channels == 3 else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, k, (n, 1), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # compressed, as the official files are
    return arrays


def _expected(arrays, split):
    x = torch.from_numpy(arrays[f"{split}_images"])
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


@pytest.fixture
def on_disk(monkeypatch):
    monkeypatch.setenv(npy_cache.THRESHOLD_ENV, ON_DISK)


def test_conversion_happens_once_and_gives_the_in_memory_values(tmp_path, monkeypatch, on_disk):
    arrays = _write_npz(tmp_path / "pathmnist.npz")
    ds = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    cache = tmp_path / ".cache" / "pathmnist_28"
    assert all(isinstance(ds.images[s], DiskImages) for s in SPLITS)
    assert sorted(p.name for p in cache.glob("*.npy")) == ["test_images.npy", "train_images.npy", "val_images.npy"]
    assert any("read from disk" in note for note in ds.report.notes)
    for split in SPLITS:
        assert torch.equal(ds.images[split][:], _expected(arrays, split))
        assert torch.equal(ds.labels[split], torch.from_numpy(arrays[f"{split}_labels"][:, 0].astype(np.int64)))
    assert (ds.channels, ds.image_size) == (3, 28)

    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    monkeypatch.setattr(npy_cache, "_convert", lambda *a: pytest.fail("converted a second time"))
    again = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    assert torch.equal(again.images["train"][:], _expected(arrays, "train"))

    monkeypatch.setenv(npy_cache.THRESHOLD_ENV, IN_MEMORY)
    memory = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    assert isinstance(memory.images["train"], torch.Tensor)
    assert all(torch.equal(memory.images[s], ds.images[s][:]) for s in SPLITS)


def test_grayscale_images_get_one_channel(tmp_path, on_disk):
    arrays = _write_npz(tmp_path / "breastmnist_64.npz", size=64, channels=1, k=2)
    ds = load_medmnist("breastmnist", size=64, data_dir=tmp_path, download=False)
    assert ds.images["val"].shape == torch.Size([12, 1, 64, 64])
    assert torch.equal(ds.images["val"][:], _expected(arrays, "val"))


def test_indexing_matches_a_tensor(tmp_path, on_disk):
    arrays = _write_npz(tmp_path / "pathmnist.npz")
    x = load_medmnist("pathmnist", data_dir=tmp_path, download=False).images["train"]
    ref = _expected(arrays, "train")
    assert (x.shape, x.dtype, x.ndim, len(x), x.numel(), x.device.type) == (
        ref.shape, torch.uint8, 4, 40, ref.numel(), "cpu")
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    mask = torch.arange(40) % 3 == 0
    keys = [0, 39, -1, -40, np.int64(7), torch.tensor(5), slice(3, 17), slice(None, None, 7), slice(30, 99),
            slice(5, 5), slice(-6, None), order, order[:16], order.numpy(), [3, 3, 1], mask,
            torch.tensor([], dtype=torch.long), (4, 0), (slice(2, 6), 1, slice(0, 5))]
    for key in keys:
        got = x[key]
        assert isinstance(got, torch.Tensor) and got.dtype == torch.uint8, key
        assert torch.equal(got, ref[key]), key
    for bad in (40, -41, torch.tensor([0, 40]), 2.5):
        with pytest.raises(IndexError):
            x[bad]
    assert torch.equal(pickle.loads(pickle.dumps(x))[order], ref[order])
    assert x.cpu() is x
    assert x.to("cpu") is x and x.to(torch.uint8) is x
    for target in ("cuda", torch.device("cuda", 0), torch.float32):
        with pytest.raises(DataError, match="stays on disk"):
            x.to(target)


def test_batches_keep_disk_images_on_the_host(tmp_path, on_disk):
    arrays = _write_npz(tmp_path / "pathmnist.npz")
    ds = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    batches = make_batches(ds.images["train"], ds.labels["train"], (0.5,) * 3, (0.5,) * 3)
    moved = batches.to(torch.device("meta"))  # what the trainer does for a GPU
    assert moved.images is ds.images["train"] and moved.scale.device.type == "meta"
    idx = torch.tensor([9, 2, 30])
    x, y = batches.get(idx, torch.device("cpu"))
    expected = _expected(arrays, "train")[idx].float() / 127.5 - 1
    torch.testing.assert_close(x, expected)
    assert torch.equal(y, ds.labels["train"][idx])


def test_a_changed_npz_is_converted_again(tmp_path, on_disk):
    path = tmp_path / "pathmnist.npz"
    _write_npz(path, seed=0)
    load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    arrays = _write_npz(path, sizes=(30, 12, 10), seed=1)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # even were the clock coarse
    ds = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    assert ds.images["train"].shape[0] == 30
    assert torch.equal(ds.images["train"][:], _expected(arrays, "train"))


def test_a_half_written_cache_is_ignored(tmp_path, on_disk):
    arrays = _write_npz(tmp_path / "pathmnist.npz")
    cache = tmp_path / ".cache" / "pathmnist_28"
    load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    # a conversion killed midway: its temporary file is there, the record of a finished copy is not
    (cache / "source.json").unlink()
    (cache / ".train_images.npy.abc123.tmp").write_bytes(b"\x93NUMPY half")
    ds = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    assert torch.equal(ds.images["train"][:], _expected(arrays, "train"))
    assert not list(cache.glob("*.tmp")) and (cache / "source.json").exists()
    # a copy cut short behind a valid record is noticed too
    with open(cache / "val_images.npy", "r+b") as fh:
        fh.truncate(1000)
    ds = load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    assert torch.equal(ds.images["val"][:], _expected(arrays, "val"))


def test_a_wrong_shape_is_refused_before_converting(tmp_path, on_disk):
    _write_npz(tmp_path / "pathmnist.npz", size=64)  # 64 px images under the 28 px name
    with pytest.raises(DataError, match="expected"):
        load_medmnist("pathmnist", data_dir=tmp_path, download=False)
    assert not (tmp_path / ".cache").exists()


def test_the_generated_large_format_loads_from_disk(tmp_path, on_disk):
    from bench.make_large import write_npz

    sizes = write_npz(tmp_path / "pathmnist_64.npz", "pathmnist", 64, total=120, seed=0)
    ds = load_medmnist("pathmnist", size=64, data_dir=tmp_path, download=False)
    assert {s: len(ds.images[s]) for s in SPLITS} == sizes and sum(sizes.values()) == 120
    assert isinstance(ds.images["train"], DiskImages) and ds.images["train"].shape[1:] == (3, 64, 64)
    # images of one class are closer to each other than to another class's (learnable content)
    x, y = ds.images["train"][:].float(), ds.labels["train"]
    a, b = (x[y == c] for c in torch.bincount(y).topk(2).indices)
    assert (a[0] - a[1]).abs().mean() < (a[0] - b[0]).abs().mean()


def test_training_from_disk_equals_training_in_memory(tmp_path, monkeypatch):
    from core.runs import RunStore
    from core.runs.worker import main as worker_main
    from core.train import build_params, make_config, run_training

    _write_npz(tmp_path / "data" / "pathmnist.npz", sizes=(48, 16, 16))

    def train(threshold):
        monkeypatch.setenv(npy_cache.THRESHOLD_ENV, threshold)
        store = RunStore(tmp_path / f"runs-{threshold}")
        cfg = make_config("pathmnist", "medvcnn", "default", data_dir=str(tmp_path / "data"), epochs=1,
                          batch_size=16, seed=0, device="cpu", augment="none")
        run = store.create_run(build_params(cfg))
        assert worker_main([str(run.dir)], train=run_training) == 0
        meta = run.meta()
        assert meta["status"] == "completed", meta.get("error")
        return run.predictions()

    disk, memory = train(ON_DISK), train(IN_MEMORY)
    assert (tmp_path / "data" / ".cache" / "pathmnist_28" / "source.json").exists()
    assert disk["test_scores"].shape == (16, 9)
    np.testing.assert_array_equal(disk["test_scores"], memory["test_scores"])
