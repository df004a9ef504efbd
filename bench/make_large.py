"""Write a generated MedMNIST-format ``.npz`` of a given size, for the memory benchmark.

``python -m bench make-large --gb 6 --size 224 --out DIR [--flag pathmnist]`` writes
``DIR/pathmnist_224.npz`` with ``{train,val,test}_{images,labels}`` as the official files
have them (uint8 images (N, H, W[, 3]), uint8 labels (N, 1)), split in the official
proportions. Each image is its class's stripe pattern plus noise, so a model learns
something. The file is streamed into the zip (stored, not compressed) one chunk at a time,
so writing 16 GB needs a few hundred MB of memory.

``load_medmnist(flag, size, data_dir=DIR)`` loads it: the MD5 is checked only when a file
is imported, never when one already in the data folder is loaded.
"""

from __future__ import annotations

import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from bench.machine import describe

CHUNK_IMAGES = 256


def add_arguments(p) -> None:
    p.add_argument("--gb", type=float, required=True, help="size of the images in GiB (at least this much is written)")
    p.add_argument("--size", type=int, default=224, help="image side: 28, 64, 128 or 224")
    p.add_argument("--out", required=True, help="folder to write <flag>_<size>.npz into (use it as --data-dir)")
    p.add_argument("--flag", default="pathmnist", help="which MedMNIST dataset it imitates (not multi-label)")
    p.add_argument("--seed", type=int, default=0)


def split_sizes(flag: str, total: int) -> dict[str, int]:
    """``total`` images split in the official train/val/test proportions of ``flag``."""
    from core.data import medmnist_facts

    official = medmnist_facts(flag).n_samples
    whole = sum(official.values())
    val = max(1, round(total * official["val"] / whole))
    test = max(1, round(total * official["test"] / whole))
    return {"train": max(1, total - val - test), "val": val, "test": test}


def class_patterns(num_classes: int, size: int, channels: int) -> np.ndarray:
    """One uint8 (H, W, C) stripe pattern per class, values 0..191 (noise is added on top)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((num_classes, size, size, channels), dtype=np.uint8)
    for k in range(num_classes):
        angle = math.pi * k / num_classes
        freq = 3 + 2 * (k % 3)
        wave = np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
        for c in range(channels):
            tint = 0.6 + 0.4 * math.cos(k + 2.1 * c)  # classes differ in colour too
            out[k, :, :, c] = np.clip(96 + 95 * tint * wave, 0, 191).astype(np.uint8)
    return out


def write_npz(path: str | os.PathLike, flag: str, size: int, total: int, seed: int = 0, progress=None) -> dict[str, int]:
    """Write a MedMNIST-format ``.npz`` of ``total`` generated images, streaming.

    Args:
        path: the file to write (written under a temporary name, then renamed).
        flag: the MedMNIST dataset imitated (channels, classes and split proportions).
        size: image side in pixels.
        total: number of images over all splits.
        seed: seed of labels and noise.
        progress: optional callable with the number of images written so far.

    Returns:
        split -> number of images.
    """
    from core.data import medmnist_facts

    facts = medmnist_facts(flag)
    if facts.task == "multi-label":
        raise SystemExit(f"{flag} is multi-label; pick a single-label dataset such as pathmnist")
    k, channels = facts.num_classes, facts.channels
    sizes = split_sizes(flag, total)
    patterns = class_patterns(k, size, channels)
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    done = 0
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for split, n in sizes.items():
                labels = rng.integers(0, k, size=(n, 1), dtype=np.uint8)
                with zf.open(f"{split}_labels.npy", "w") as fh:
                    np.lib.format.write_array(fh, labels)
                shape = (n, size, size) if channels == 1 else (n, size, size, channels)
                with zf.open(f"{split}_images.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
                    for start in range(0, n, CHUNK_IMAGES):
                        y = labels[start:start + CHUNK_IMAGES, 0]
                        x = patterns[y] + rng.integers(0, 64, size=(len(y), size, size, channels), dtype=np.uint8)
                        fh.write((x[..., 0] if channels == 1 else x).tobytes())
                        done += len(y)
                        if progress:
                            progress(done)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sizes


def run(args) -> int:
    from tqdm import tqdm

    from core.data import medmnist_facts, medmnist_filename

    flag = args.flag.lower()
    channels = medmnist_facts(flag).channels
    per_image = args.size * args.size * channels
    total = math.ceil(args.gb * 1024**3 / per_image)
    path = Path(args.out).expanduser() / medmnist_filename(flag, args.size)
    print(f"# {describe()}")
    print(f"# {total} generated {args.size} px {flag} images, {total * per_image / 1024**3:.2f} GiB -> {path}")
    t0 = time.monotonic()
    with tqdm(total=total, unit="img", unit_scale=True) as bar:
        sizes = write_npz(path, flag, args.size, total, args.seed, progress=lambda n: bar.update(n - bar.n))
    print(f"splits: {sizes}")
    print(f"wrote {path} ({path.stat().st_size / 1024**3:.2f} GiB) in {time.monotonic() - t0:.0f} s")
    return 0
