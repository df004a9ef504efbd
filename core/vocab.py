"""The studio's shared vocabulary: task names, split names, image sizes and MedMNIST's names
for our tasks. A leaf module (it imports nothing from ``core``), so every package can use it
without an import cycle.
"""

from __future__ import annotations

#: Our task names. "binary", "multi-class" and "ordinal" score with a softmax over the
#: classes (binary has two columns); "multi-label" with one sigmoid per label.
TASKS = ("binary", "multi-class", "multi-label", "ordinal")

#: The splits of a dataset, in the order they are made and shown.
SPLITS = ("train", "val", "test")

#: Image side lengths a model is built for (MedMNIST's and MedMNIST+'s sizes).
IMAGE_SIZES: tuple[int, ...] = (28, 64, 128, 224)

#: medmnist's task names (the ``task`` of each dataset in its table) -> our task name.
MEDMNIST_TASKS = {
    "binary-class": "binary",
    "multi-class": "multi-class",
    "multi-label, binary-class": "multi-label",
    "ordinal-regression": "ordinal",
}

#: Our task name -> medmnist's (for its ``getACC`` / ``getAUC``).
TASK_TO_MEDMNIST = {ours: theirs for theirs, ours in MEDMNIST_TASKS.items()}
