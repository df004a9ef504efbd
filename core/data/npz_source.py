"""A person's own ``.npz`` (an altered or relabelled MedMNIST file, or any file laid out like
one) imported as their own dataset, with the same checks as any upload.

An official MedMNIST file is recognised by its MD5 (:mod:`core.data.medmnist_source`); any
other ``.npz`` can be imported here instead. It is opened without pickle, and must hold
``train_images`` and ``train_labels`` (``val_*`` and ``test_*`` too, or they are carved from
train, stratified and seeded, as for an image folder); images uint8 ``(N, H, W)`` or
``(N, H, W, 3)``, square; labels whole numbers ``(N,)`` / ``(N, 1)`` from 0, or ``(N, K)`` of
0/1 for several findings per image. Class names come from a ``class_names`` array in the
file, else from the MedMNIST dataset the file is named after when its labels fit, else
"class 0", "class 1", ...

An imported file lives in its own folder (``dataset.npz`` beside ``dataset.json``, which
records the class names, the task and the original file name), so it sits with imported
image folders and :func:`core.data.load_dataset` reads it from the folder's path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.dataset import SPLITS, ImageDataset, ImportReport
from core.data.medmnist_info import is_medmnist, medmnist_facts
from core.errors import DataError

NPZ_FILE = "dataset.npz"
INFO_FILE = "dataset.json"
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # as an image folder without split folders
_NAME = re.compile(r"^(?P<flag>[a-z]+mnist)(?:_(?P<size>\d+))?(?:\s*\(\d+\))?\.npz$")


def is_npz_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder made by :func:`import_npz_dataset`."""
    return (Path(path) / NPZ_FILE).is_file()


def npz_dataset_folder(data: bytes, filename: str, dest_root: str | os.PathLike) -> Path:
    """Where :func:`import_npz_dataset` keeps these bytes: ``<dest_root>/<name>-<hash>``.

    Args:
        data: the file's bytes (their hash tells two files of the same name apart).
        filename: the upload's name.
        dest_root: the folder of this person's imports.

    Returns:
        The folder's path (it may not exist yet).
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-_")[:40] or "dataset"
    return Path(dest_root) / f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}"


def import_npz_dataset(data: bytes, filename: str, dest_root: str | os.PathLike) -> Path:
    """Check an uploaded ``.npz`` and keep it as the person's own dataset.

    Args:
        data: the file's bytes.
        filename: its original name (it names the dataset; a MedMNIST name lends that
            dataset's class names when the labels fit them).
        dest_root: the folder that holds this person's imports (one sub-folder per import).

    Returns:
        The dataset's folder, for :func:`core.data.load_dataset`. Importing the same bytes
        again returns the same folder.

    Raises:
        DataError: the file is not a usable ``.npz`` (what is wrong, and what to do).
    """
    target = npz_dataset_folder(data, filename, dest_root)
    if is_npz_dataset(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".importing-{target.name}-{uuid.uuid4().hex[:6]}")
    staging.mkdir()
    try:
        (staging / NPZ_FILE).write_bytes(data)
        info = _describe(staging / NPZ_FILE, Path(filename).name)
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        read_npz_dataset(staging)  # every check, before the folder becomes visible
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_npz_dataset(path: str | os.PathLike, size: int | None = None, seed: int = 0) -> ImageDataset:
    """Load an imported ``.npz`` dataset (its folder, or a ``.npz`` file directly).

    Args:
        path: a folder from :func:`import_npz_dataset`, or a ``.npz`` file.
        size: image side to resize to (bilinear); None keeps the file's size.
        seed: seed of the stratified split when the file has no val or test arrays.

    Returns:
        The dataset (source ``"npz"``); its report says where the class names came from and
        how the splits were made.

    Raises:
        DataError: the file is missing, unreadable, or not laid out as described above.
    """
    path = Path(path)
    folder_given = path.is_dir()
    file = path / NPZ_FILE if folder_given else path
    info = _read_info(path / INFO_FILE) if folder_given else _describe(file, file.name)
    label = info.get("file") or file.name
    arrays = _load(file, label)
    report = ImportReport(files_read=[label])
    names = list(info["class_names"])
    task = info["task"]
    images, labels = {}, {}
    shape = None
    for split in [s for s in SPLITS if f"{s}_images" in arrays]:
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        x = _check_images(x, f"{split}_images", label, shape)
        shape = x.shape[1:]
        images[split] = _resize(x, size)
        labels[split] = torch.from_numpy(_check_labels(y, f"{split}_labels", label, len(x), len(names), task))
    report.note(f"imported from {label} as your own dataset; {info['names_from']}")
    _carve(images, labels, task, seed, report)
    return ImageDataset(name=info.get("name") or Path(label).stem, source="npz", images=images, labels=labels,
                        task=task, class_names=names, report=report)


# --------------------------------------------------------------------------- reading
def _load(file: Path, label: str, labels_only: bool = False) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise DataError(f"{label} is not there any more; import the .npz file again")
    try:
        npz = np.load(file, allow_pickle=False)
    except Exception as exc:  # numpy raises many types on a damaged zip
        raise DataError(f"{label} is not a readable .npz file ({_reason(exc)}); save it again with numpy.savez") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{label} holds a single array; save train_images and train_labels (and val_/test_) "
                        "with numpy.savez")
    with npz:
        needed = ["train_images", "train_labels"]
        for s in ("val", "test"):
            have = [f"{s}_{p}" in npz.files for p in ("images", "labels")]
            if any(have) and not all(have):
                raise DataError(f"{label} has {s}_images or {s}_labels but not both; save both or neither")
            if all(have):
                needed += [f"{s}_images", f"{s}_labels"]
        if "train_images" not in npz.files or "train_labels" not in npz.files:
            found = ", ".join(sorted(npz.files)) or "nothing"
            raise DataError(f"{label} lacks train_images or train_labels (it has {found}); save them with "
                            "numpy.savez, as MedMNIST files do")
        out = {}
        if labels_only:  # the images are checked when the dataset is read
            needed = [key for key in needed if key.endswith("_labels")]
        for key in needed + (["class_names"] if "class_names" in npz.files else []):
            try:
                out[key] = npz[key]
            except ValueError as exc:  # object arrays: never unpickled
                raise DataError(f"{label}: {key} holds Python objects, which are never loaded for safety; save "
                                "numbers (and class names as plain strings)") from exc
            except Exception as exc:
                raise DataError(f"{label}: {key} could not be read ({_reason(exc)}); save the file again") from exc
    return out


def _check_images(x: np.ndarray, key: str, label: str, shape) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataError(f"{label}: {key} has type {x.dtype}; save the pixels as uint8 (0-255)")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3) or x.shape[1] != x.shape[2]:
        raise DataError(f"{label}: {key} has shape {tuple(x.shape)}; save square images as (N, H, H) for "
                        "grayscale or (N, H, H, 3) for colour")
    if x.shape[0] == 0 or x.shape[1] < 8:
        raise DataError(f"{label}: {key} holds {x.shape[0]} images of {x.shape[1]} px; save at least one image "
                        "of 8 px or more")
    t = x.reshape(x.shape[0], 1, *x.shape[1:]) if x.ndim == 3 else np.transpose(x, (0, 3, 1, 2))
    if shape is not None and t.shape[1:] != shape:
        raise DataError(f"{label}: {key} are {t.shape[1]}-channel {t.shape[-1]} px images but train_images are "
                        f"{shape[0]}-channel {shape[-1]} px; save every split alike")
    return np.ascontiguousarray(t)


def _check_labels(y: np.ndarray, key: str, label: str, n: int, k: int, task: str) -> np.ndarray:
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DataError(f"{label}: {key} has type {y.dtype}; save whole-number class labels")
    if task == "multi-label":
        if y.shape != (n, k) or (y.size and (y.min() < 0 or y.max() > 1)):
            raise DataError(f"{label}: {key} must be ({n}, {k}) of 0 and 1, one column per finding; "
                            f"it is {tuple(y.shape)}")
        return y.astype(np.float32)
    if y.shape not in ((n,), (n, 1)):
        raise DataError(f"{label}: {key} has shape {tuple(y.shape)}, but there are {n} images; save one label "
                        "per image")
    y = y.reshape(n).astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise DataError(f"{label}: {key} has labels from {y.min()} to {y.max()}, but there are {k} classes "
                        f"(0 to {k - 1}); fix the labels or the class names")
    return y


def _resize(x: np.ndarray, size: int | None) -> torch.Tensor:
    t = torch.from_numpy(x)
    if size is None or int(size) == t.shape[-1]:
        return t
    out = torch.nn.functional.interpolate(t.float(), size=(int(size), int(size)), mode="bilinear",
                                          align_corners=False, antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8)


def _carve(images: dict, labels: dict, task: str, seed: int, report: ImportReport) -> None:
    """Make the val and test splits the file lacks from train, stratified and seeded."""
    from core.data.folder_source import stratified_split

    missing = [s for s in ("val", "test") if s not in images]
    if not missing:
        return
    y = labels["train"].numpy()
    strata = np.zeros(len(y), dtype=np.int64) if task == "multi-label" else y
    wanted = [SPLIT_FRACTIONS[0]] + [SPLIT_FRACTIONS[SPLITS.index(s)] for s in missing]
    pieces = stratified_split(strata, tuple(w / sum(wanted) for w in wanted), np.random.default_rng(seed))
    x, y_t = images["train"], labels["train"]
    for split, idx in zip(["train", *missing], pieces):
        index = torch.from_numpy(idx)
        images[split], labels[split] = x[index].contiguous(), y_t[index]
    report.note(f"{' and '.join(missing)} carved from train, stratified by class, with seed {seed}")


# --------------------------------------------------------------------------- class names
def _describe(file: Path, filename: str) -> dict[str, Any]:
    """Name, task and class names of a ``.npz`` (from the file, its MedMNIST name, or numbers)."""
    arrays = _load(file, filename, labels_only=True)
    for key in [k for k in arrays if k.endswith("_labels")]:
        if not (np.issubdtype(arrays[key].dtype, np.integer) or arrays[key].dtype == np.bool_):
            raise DataError(f"{filename}: {key} has type {arrays[key].dtype}; save whole-number class labels")
    ys = [arrays[k] for k in arrays if k.endswith("_labels")]
    multi = ys[0].ndim == 2 and ys[0].shape[1] > 1
    k = int(ys[0].shape[1]) if multi else int(max((int(y.max()) for y in ys if y.size), default=0)) + 1
    flag = _flag(filename)
    if "class_names" in arrays:
        names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
        if not multi and len(names) < k:
            raise DataError(f"{filename}: class_names lists {len(names)} names but the labels go up to {k - 1}; "
                            "give one name per class")
        k, source, ordinal = len(names), "class names from the file's class_names", False
    elif flag and _fits(flag, multi, k):
        names, source = list(medmnist_facts(flag).class_names), f"class names of MedMNIST {flag}, whose name the file has"
        ordinal = medmnist_facts(flag).task == "ordinal"
        k = len(names)
    else:
        names, source, ordinal = [f"class {i}" for i in range(k)], "classes numbered (the file names none)", False
    if len(set(names)) != len(names):
        raise DataError(f"{filename}: class_names has a name twice; give every class its own name")
    if k < 2:
        raise DataError(f"{filename}: every label is the same class; a classifier needs at least two classes")
    task = "multi-label" if multi else "ordinal" if ordinal else "binary" if k == 2 else "multi-class"
    return {"name": f"{Path(filename).stem} (own)", "file": filename, "class_names": names, "task": task,
            "names_from": source, "based_on": flag}


def _flag(filename: str) -> str | None:
    m = _NAME.match(filename.strip().lower())
    return m.group("flag") if m and is_medmnist(m.group("flag")) else None


def _fits(flag: str, multi: bool, k: int) -> bool:
    facts = medmnist_facts(flag)
    return (multi and k == facts.num_classes and facts.task == "multi-label") or (
        not multi and k <= facts.num_classes and facts.task != "multi-label")


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(info, dict) and isinstance(info.get("class_names"), list) and info.get("task"):
            return info
    except (OSError, ValueError):
        pass
    raise DataError(f"{path.parent.name} lost its {INFO_FILE} (or it was edited by hand); import the .npz again")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:120]
