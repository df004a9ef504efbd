"""Datasets: where images come from, how they are checked, and what training sees of them.

Every source returns an :class:`ImageDataset` whose splits are uint8 tensors in memory (or
:class:`~core.data.ondisk.DiskImages` when too big). Find a piece by its module's name:

- ``catalogue``: :func:`load_dataset` (any spec: MedMNIST name, folder, zip, ``.npz``),
  :func:`list_datasets`, :func:`count_dataset_images`.
- ``medmnist_info``: the one reader of ``medmnist.INFO``: flags, sizes, task, class names,
  split sizes, file names, URLs and MD5s, :func:`medmnist_on_disk`.
- ``dataset``: the types only (:class:`ImageDataset`, :class:`ImportReport`).
- Sources: ``medmnist_source`` (official files: read, download, import), ``folder_source``
  (class folders and zips), ``npz_source`` (a person's own ``.npz``).
- ``uploads``: the imported-datasets store (per-owner folders, saving an uploaded zip).
- Files: ``images`` (decode any image file), ``dicom``, ``pixels`` (bit depth, EXIF,
  stretch), ``safe_zip`` (untrusted zips; callers pass the caps), ``inputs`` (files,
  folders and zips given to ``predict``).
- Big data: ``npy_cache`` and ``ondisk`` (memory-mapped splits).
- Checks: ``split_check`` (enough images per class to split), ``laterality`` (classes that
  name a side, so no mirroring).
- Training aids: ``augment`` (presets), ``balance`` (class weights, weighted sampler).

Nothing here imports the demo's limits policy: its caps arrive as arguments.
"""

from core.data.augment import AUGMENT_PRESETS, AugmentSpec, augment_batch, augment_spec, describe_augment
from core.data.balance import class_weights, sample_weights, weighted_sampler
from core.data.catalogue import count_dataset_images, list_datasets, load_dataset
from core.data.dataset import SPLITS, TASKS, ImageDataset, ImportReport
from core.data.folder_source import load_image_folder
from core.data.images import (IMAGE_EXTENSIONS, MAX_FILE_BYTES, MAX_PIXELS, DecodedImage, decode_image, image_to_tensor,
                              is_grayscale, is_image_candidate, read_image)
from core.data.medmnist_info import (MEDMNIST_SIZES, MedmnistFacts, list_medmnist, medmnist_facts, medmnist_filename,
                                     medmnist_md5, medmnist_on_disk, medmnist_url)
from core.data.medmnist_source import NotOfficialNpz, import_npz, import_npz_bytes, load_medmnist, read_medmnist_npz
from core.data.npz_source import import_npz_dataset, is_npz_dataset, read_npz_dataset
from core.data.safe_zip import extract_zip

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentSpec",
    "DecodedImage",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "ImportReport",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MEDMNIST_SIZES",
    "MedmnistFacts",
    "NotOfficialNpz",
    "SPLITS",
    "TASKS",
    "augment_batch",
    "augment_spec",
    "class_weights",
    "count_dataset_images",
    "decode_image",
    "describe_augment",
    "extract_zip",
    "image_to_tensor",
    "import_npz",
    "import_npz_bytes",
    "import_npz_dataset",
    "is_npz_dataset",
    "is_grayscale",
    "is_image_candidate",
    "list_datasets",
    "list_medmnist",
    "load_dataset",
    "load_image_folder",
    "load_medmnist",
    "medmnist_facts",
    "medmnist_filename",
    "medmnist_md5",
    "medmnist_on_disk",
    "medmnist_url",
    "read_image",
    "read_medmnist_npz",
    "read_npz_dataset",
    "sample_weights",
    "weighted_sampler",
]
