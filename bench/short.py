"""Short runs on small data: what a person gets from a few epochs on a few hundred images.

Three cases, each a real run through ``run_training`` with the default recipe, 3 seeds:
- breastmnist (546 training images) at ``--epochs 4``: target test AUC >= 0.80 for every seed;
- an image folder of 60 training images per class at ``--epochs 3``: target test ACC >= 0.5.
  The folder is ``--folder PATH`` when given; otherwise one is written from bloodmnist (its 8
  classes, real images) when that file is present;
- a generated 10-class folder (oriented stripes under noise), also 60 training images per
  class at ``--epochs 3``: target test ACC >= 0.5. It needs no data at all.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.machine import describe

PER_CLASS = 86  # a 70/15/15 split leaves 60 of these for training


def add_arguments(p) -> None:
    p.add_argument("--data-dir", help="where breastmnist.npz / bloodmnist.npz are (default $STUDIO_DATA_DIR)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", default="medvcnn")
    p.add_argument("--folder", help="an image folder (one subfolder per class) to use instead of bloodmnist's")
    p.add_argument("--only", choices=["breast", "folder", "generated"], action="append",
                   help="run only these cases (repeatable); default all that have data")


def write_generated_folder(root: Path, classes: int = 10, per_class: int = PER_CLASS, size: int = 28,
                           seed: int = 0) -> Path:
    """Class k: stripes at k x 18 degrees, random phase and frequency, under strong noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for k in range(classes):
        folder = root / f"pattern_{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        angle = math.pi * k / classes
        for i in range(per_class):
            freq = rng.uniform(0.35, 0.6)
            a = angle + rng.normal(0, 0.05)
            wave = np.sin(freq * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 2 * math.pi))
            img = 128 + 50 * wave + rng.normal(0, 45, size=(size, size))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def write_folder_from_npz(npz: Path, root: Path, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """``per_class`` real training images of every class of a MedMNIST file, as PNG folders."""
    from PIL import Image

    with np.load(npz, allow_pickle=False) as arrays:
        images, labels = arrays["train_images"], arrays["train_labels"].reshape(-1)
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        folder = root / f"class_{int(c)}"
        folder.mkdir(parents=True, exist_ok=True)
        pick = rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for i, j in enumerate(pick):
            Image.fromarray(images[j]).save(folder / f"{i:03d}.png")
    return root


def _one(dataset: str, model: str, epochs: int, seed: int, data_dir: str | None, runs_dir: str) -> dict:
    """One default-recipe run on an epoch budget (no time limit), through the accuracy bench's runner."""
    from bench.accuracy import train_one

    return train_one(dataset, model, 28, "default", seed, 0.0, epochs, data_dir, runs_dir)


def _case(title: str, dataset: str, args, epochs: int, metric: str, target: float, runs_dir: str) -> bool:
    print(f"\n## {title}: --epochs {epochs}, target test {metric.upper()} >= {target} for every seed", flush=True)
    rows = [_one(dataset, args.model, epochs, s, args.data_dir, runs_dir) for s in args.seeds]
    for r in rows:
        print(f"seed {r['seed']}: batch {r['batch']}, {r['seconds']:.1f} s, test ACC {r['acc']:.4f} "
              f"AUC {r['auc']:.4f}", flush=True)
    values = [r[metric] for r in rows]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    ok = min(values) >= target
    print(f"{metric.upper()} {statistics.mean(values):.4f} ± {sd:.4f}, lowest {min(values):.4f}: "
          f"{'met' if ok else 'NOT met'}")
    return ok


def run(args) -> int:
    from core.paths import data_dir as resolve_data_dir

    only = set(args.only or ["breast", "folder", "generated"])
    data = Path(resolve_data_dir(args.data_dir))
    print(f"# {describe()}")
    print(f"# default recipe, {args.model}, seeds {args.seeds}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-short-") as tmp:
        tmp = Path(tmp)
        if "breast" in only:
            if (data / "breastmnist.npz").exists():
                results.append(_case("breastmnist", "breastmnist", args, 4, "auc", 0.80, str(tmp / "runs")))
            else:
                print(f"\n## breastmnist: skipped, breastmnist.npz is not in {data}")
        if "folder" in only:
            folder = Path(args.folder) if args.folder else None
            if folder is None and (data / "bloodmnist.npz").exists():
                folder = write_folder_from_npz(data / "bloodmnist.npz", tmp / "blood_folder")
            if folder is None:
                print(f"\n## image folder: skipped, give --folder or put bloodmnist.npz in {data}")
            else:
                results.append(_case(f"image folder {folder.name}", str(folder), args, 3, "acc", 0.5,
                                     str(tmp / "runs")))
        if "generated" in only:
            folder = write_generated_folder(tmp / "generated_10_classes")
            results.append(_case("generated 10-class folder", str(folder), args, 3, "acc", 0.5, str(tmp / "runs")))
    return 0 if all(results) else 1
