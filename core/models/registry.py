"""The model registry: names -> builders, plus a small info record per model.

timm style: ``@register_model`` records a builder under its function name;
:func:`create_model` calls it with explicit arguments; :func:`list_models` lists the
names. :func:`model_info` describes a model (paper, parameter count, Grad-CAM layer,
normalisation) for the pages and the trainer without the caller building it.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from core.errors import ConfigError, StudioError
from core.models.profile import count_parameters, has_dropout
from core.vocab import IMAGE_SIZES  # the input sizes the studio offers (MedMNIST's)

#: Channel statistics of ImageNet, which the torchvision and timm weights were trained on.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Scaling to [-1, 1], the seed papers' (and MedMNIST's) normalisation.
HALF: tuple[float, float, float] = (0.5, 0.5, 0.5)

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)


@dataclass(frozen=True)
class ModelInfo:
    """What the studio knows about one model at one input configuration.

    Attributes:
        name: the registered name.
        paper: where it comes from, e.g. ``"MedvCNN (seed 000)"``, ``"torchvision"``.
        description: one line for a non-programmer.
        family: the kind of network, e.g. ``"plain CNN"``.
        params: trainable parameters when built from scratch for these channels,
            classes and size.
        gradcam_layer: dotted path of the module Grad-CAM should hook
            (``model.get_submodule(gradcam_layer)``): the registered layer, or at small
            sizes the deepest of its siblings whose map is at least
            :data:`MIN_GRADCAM_SIDE` cells per side (see :func:`_gradcam_layer_for_size`).
        recipe: the training recipe key (the seed key for seed models, else ``"default"``).
        mean: per-channel mean to normalise with when training from scratch (3 entries;
            a grayscale pipeline uses the first).
        std: per-channel std to go with ``mean``.
        has_dropout: whether Monte-Carlo dropout can vary the model's outputs
            (:func:`core.models.profile.has_dropout`, the one rule the Classify page uses too).
        supports_pretrained: whether ImageNet weights can be loaded.
        pretrained_mean: mean to normalise with when ``pretrained=True`` (ImageNet's), or
            None when the model has no pretrained weights.
        pretrained_std: std to go with ``pretrained_mean``.
        in_channels: channels this record was computed for.
        num_classes: classes this record was computed for.
        image_size: input side length this record was computed for.
    """

    name: str
    paper: str
    description: str
    family: str
    params: int
    gradcam_layer: str
    recipe: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    has_dropout: bool
    supports_pretrained: bool
    pretrained_mean: tuple[float, float, float] | None
    pretrained_std: tuple[float, float, float] | None
    in_channels: int
    num_classes: int
    image_size: int

    def normalization(self, pretrained: bool) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The (mean, std) the data pipeline should normalise inputs with.

        Args:
            pretrained: whether the model is built with ImageNet weights.

        Returns:
            ``(pretrained_mean, pretrained_std)`` if ``pretrained`` else ``(mean, std)``;
            three entries each, of which a grayscale pipeline uses the first.

        Raises:
            StudioError: ``pretrained`` is asked of a model that has no pretrained weights.
        """
        if not pretrained:
            return self.mean, self.std
        if self.pretrained_mean is None or self.pretrained_std is None:
            raise no_pretrained_weights(self.name)
        return self.pretrained_mean, self.pretrained_std


@dataclass(frozen=True)
class _Entry:
    """A registered builder and the facts about it that do not depend on its arguments."""

    builder: Builder
    paper: str
    description: str
    family: str
    gradcam_layer: str | None
    recipe: str
    supports_pretrained: bool


_REGISTRY: dict[str, _Entry] = {}

#: Grad-CAM shows *where* only when its layer's map has at least this many cells per side:
#: a 1 x 1 map upsamples to a constant and a 2 x 2 map to little more than a quadrant.
MIN_GRADCAM_SIDE = 3

def register_model(
    fn: B | None = None,
    *,
    paper: str = "custom",
    description: str | None = None,
    family: str = "custom",
    gradcam_layer: str | None = None,
    recipe: str = "default",
    supports_pretrained: bool = False,
) -> B | Callable[[B], B]:
    """Register a model builder under its function name (usable bare or with facts).

    The builder must take exactly ``in_channels, num_classes, image_size, pretrained``.

    Args:
        fn: the builder, when used as a bare ``@register_model``.
        paper: the source, e.g. ``"ARN-CNN (seed 001)"``, ``"torchvision"``.
        description: one line for a non-programmer; defaults to the docstring's first line.
        family: the kind of network.
        gradcam_layer: dotted module path for Grad-CAM; None picks the last ``nn.Conv2d``.
        recipe: training recipe key.
        supports_pretrained: whether the builder can load ImageNet weights.

    Returns:
        The builder, unchanged (or a decorator that registers and returns it).

    Raises:
        ValueError: the name is taken or the builder's arguments are not the four above.
    """

    def decorate(builder: B) -> B:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        wanted = ["in_channels", "num_classes", "image_size", "pretrained"]
        got = list(inspect.signature(builder).parameters)
        if got != wanted:
            raise ValueError(f"builder {name!r} must take exactly {wanted}, not {got}")
        doc = (inspect.getdoc(builder) or name).splitlines()[0]
        _REGISTRY[name] = _Entry(
            builder=builder,
            paper=paper,
            description=description or doc,
            family=family,
            gradcam_layer=gradcam_layer,
            recipe=recipe,
            supports_pretrained=supports_pretrained,
        )
        return builder

    return decorate(fn) if fn is not None else decorate


def list_models() -> list[str]:
    """The registered model names.

    Returns:
        The names, sorted.
    """
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown model {name!r}; choose one of: {', '.join(list_models())}.") from None


def _is_int(value: object) -> bool:
    # numpy integers from a config or a dataset are fine; True is not a channel count
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_args(in_channels: int, num_classes: int, image_size: int) -> None:
    if not _is_int(in_channels) or in_channels not in (1, 3):
        raise ConfigError(
            f"Models take grayscale (1) or RGB (3) images, not {in_channels} channels; convert the images."
        )
    if not _is_int(num_classes) or num_classes < 1:
        raise ConfigError(f"The number of classes must be a positive whole number, not {num_classes!r}.")
    if not _is_int(image_size) or image_size not in IMAGE_SIZES:
        sizes = ", ".join(str(s) for s in IMAGE_SIZES)
        raise ConfigError(f"Image size {image_size!r} is not offered; choose one of {sizes} pixels.")


def no_pretrained_weights(name: str) -> StudioError:
    """The error for asking pretrained weights of a model that has none.

    Args:
        name: the model's registered name.

    Returns:
        A StudioError to raise.
    """
    return StudioError(f"Model {name!r} has no pretrained weights; train it from scratch (pretrained off).")


def create_model(name: str, in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        in_channels: 1 (grayscale) or 3 (RGB).
        num_classes: number of output logits.
        image_size: input side length, one of :data:`IMAGE_SIZES`.
        pretrained: load ImageNet weights (only where ``model_info(name).supports_pretrained``).

    Returns:
        A module mapping float ``(B, in_channels, image_size, image_size)`` to
        ``(B, num_classes)`` logits, in training mode.

    Raises:
        ConfigError: unknown name (the message lists the valid ones) or bad arguments.
        StudioError: pretrained weights are not available for this model or cannot be read.
    """
    entry = _entry(name)
    _check_args(in_channels, num_classes, image_size)
    if pretrained and not entry.supports_pretrained:
        raise no_pretrained_weights(name)
    return entry.builder(
        in_channels=int(in_channels),
        num_classes=int(num_classes),
        image_size=int(image_size),
        pretrained=bool(pretrained),
    )


def _last_conv(model: nn.Module) -> str:
    convs = [path for path, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; register it with an explicit gradcam_layer")
    return convs[-1]


def model_info(name: str, in_channels: int = 3, num_classes: int = 2, image_size: int = 28) -> ModelInfo:
    """Describe a model at one input configuration (cached).

    The model is built on PyTorch's ``meta`` device, which allocates no memory and runs
    no initialisation, so this is quick even for VGG-16.

    Args:
        name: a name from :func:`list_models`.
        in_channels: 1 or 3.
        num_classes: number of classes.
        image_size: one of :data:`IMAGE_SIZES`.

    Returns:
        The :class:`ModelInfo` record; ``params`` counts the from-scratch network (for the
        ResNets at 28 px, ``pretrained=True`` keeps the ImageNet stem, which has more).

    Raises:
        ConfigError: unknown name or bad arguments.
    """
    _entry(name)
    _check_args(in_channels, num_classes, image_size)
    return _model_info(name, int(in_channels), int(num_classes), int(image_size))


@functools.lru_cache(maxsize=512)
def _model_info(name: str, in_channels: int, num_classes: int, image_size: int) -> ModelInfo:
    entry = _REGISTRY[name]
    with torch.device("meta"):
        model = entry.builder(in_channels=in_channels, num_classes=num_classes, image_size=image_size, pretrained=False)
    gradcam_layer = entry.gradcam_layer or _last_conv(model)
    model.get_submodule(gradcam_layer)  # a wrong path is a bug in the registration: fail here, not in the explain page
    gradcam_layer = _gradcam_layer_for_size(model, gradcam_layer, in_channels, image_size)
    return ModelInfo(
        name=name,
        paper=entry.paper,
        description=entry.description,
        family=entry.family,
        params=count_parameters(model),
        gradcam_layer=gradcam_layer,
        recipe=entry.recipe,
        mean=HALF,
        std=HALF,
        has_dropout=has_dropout(model),
        supports_pretrained=entry.supports_pretrained,
        pretrained_mean=IMAGENET_MEAN if entry.supports_pretrained else None,
        pretrained_std=IMAGENET_STD if entry.supports_pretrained else None,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
    )


def _gradcam_layer_for_size(model: nn.Module, layer: str, in_channels: int, image_size: int) -> str:
    """The registered Grad-CAM layer, or a shallower one where its map is too small at this size.

    The registered layer is the deepest feature block, right for large inputs; at 28 px the
    ImageNet networks shrink it to 1 x 1 or 2 x 2 cells (MobileNetV2, DenseNet-121,
    InceptionV3, Xception, VGG-16), and Grad-CAM then paints the whole image one colour. One
    forward pass on the ``meta`` device (shapes only, no arithmetic) measures the map of the
    layer and of its siblings (the other children of its parent: the other dense blocks,
    Inception modules, MobileNet stages); when the layer's map is smaller than
    :data:`MIN_GRADCAM_SIDE` per side, the deepest sibling that holds a convolution and
    whose map is at least that large is taken instead. If the pass cannot run on ``meta``
    or no sibling is large enough, the registered layer stays.

    Args:
        model: the network, built on the ``meta`` device.
        layer: dotted path of the registered (or last-convolution) layer.
        in_channels: input channels.
        image_size: input side length.

    Returns:
        A dotted module path.
    """
    parent_path, _, _ = layer.rpartition(".")
    parent = model.get_submodule(parent_path)
    siblings = {child: f"{parent_path}.{name}" if parent_path else name for name, child in parent.named_children()}
    sides: dict[str, tuple[int, int]] = {}  # path -> map size, in the order the forward pass runs them

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            path = siblings[module]
            sides.pop(path, None)  # a module run twice counts where it ran last
            sides[path] = (int(output.shape[-2]), int(output.shape[-1]))

    handles = [child.register_forward_hook(record) for child in siblings]
    was_training = model.training
    try:
        model.eval()  # batch norm in training mode refuses a 1 x 1 map of one image
        with torch.no_grad():
            model(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    except Exception:  # an operator without a meta kernel: keep the registered layer
        return layer
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if min(sides.get(layer, (0, 0))) >= MIN_GRADCAM_SIDE or layer not in sides:
        return layer
    big = [path for path, (h, w) in sides.items() if min(h, w) >= MIN_GRADCAM_SIDE
           and any(isinstance(m, nn.Conv2d) for m in model.get_submodule(path).modules())]
    return big[-1] if big else layer
