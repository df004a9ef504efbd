"""The model zoo: seed architectures, ImageNet baselines and classical baselines.

Networks::

    from core.models import create_model, list_models, model_info
    model = create_model("medvcnn", in_channels=1, num_classes=2, image_size=28)
    info = model_info("medvcnn", in_channels=1, num_classes=2, image_size=28)
    mean, std = info.normalization(pretrained=False)

Classical baselines on flattened pixels: :func:`list_classical`, :func:`create_classical`.

What a built network is like (trainable parameters, whether MC dropout can vary it, latency):
:mod:`core.models.profile`.

Importing this package registers every family below (each module's ``@register_model``).
"""

from core.models.registry import (
    IMAGE_SIZES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)

# Imported for their registrations.
from core.models import (  # noqa: E402,F401  isort: skip
    arn_cnn,
    bloodcnn,
    cnn_lstm,
    medvcnn,
    medvlstm,
    quadsnet,
    snet,
    torchvision_zoo,
    xception,
)
from core.models.classical import ClassicalBaseline, create_classical, list_classical  # noqa: E402

__all__ = [
    "IMAGE_SIZES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClassicalBaseline",
    "ModelInfo",
    "create_classical",
    "create_model",
    "list_classical",
    "list_models",
    "model_info",
    "register_model",
]
