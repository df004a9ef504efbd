"""Datasets: MedMNIST files, image folders and zips, augmentation and class balancing.

Every source returns an :class:`ImageDataset` whose splits are uint8 tensors in memory.
"""

from core.data.augment import AUGMENT_PRESETS, AugmentSpec, augment_batch, augment_spec, describe_augment
from core.data.balance import class_weights, sample_weights, weighted_sampler
from core.data.dataset import SPLITS, TASKS, ImageDataset, ImportReport, list_datasets, load_dataset
from core.data.folder_source import load_image_folder
from core.data.images import (IMAGE_EXTENSIONS, MAX_FILE_BYTES, MAX_PIXELS, DecodedImage, decode_image, image_to_tensor,
                              is_grayscale, is_image_candidate, read_image)
from core.data.medmnist_source import (
    MEDMNIST_SIZES,
    NotOfficialNpz,
    import_npz,
    import_npz_bytes,
    list_medmnist,
    load_medmnist,
    medmnist_filename,
    medmnist_md5,
    medmnist_url,
    read_medmnist_npz,
)
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
    "NotOfficialNpz",
    "SPLITS",
    "TASKS",
    "augment_batch",
    "augment_spec",
    "class_weights",
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
    "medmnist_filename",
    "medmnist_md5",
    "medmnist_url",
    "read_image",
    "read_medmnist_npz",
    "read_npz_dataset",
    "sample_weights",
    "weighted_sampler",
]
