"""The torchvision baselines the seed papers compare against (seeds 002 and 003, MedMNIST v2).

Every builder starts from torchvision's RGB network with a fresh ``num_classes``
classifier, loads ImageNet weights into everything but that classifier when asked,
turns the first convolution grayscale when needed (filters summed over RGB), and wraps
the result in :class:`~core.models.layers.BaselineNet`, which upsamples inputs that are
too small for the network's pooling. Grad-CAM paths therefore start with ``net.``.

With ``pretrained=True`` inputs are normalised with ImageNet's mean/std
(``ModelInfo.normalization(True)``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models as tvm
from torchvision.models._api import WeightsEnum

from core.models.layers import BaselineNet
from core.models.registry import HALF, IMAGENET_MEAN, IMAGENET_STD, register_model
from core.models.weights import fetch_state_dict, load_backbone, relu_not_inplace, rename_densenet_keys, set_in_channels


def _baseline(
    arch: str,
    make: Callable[[], nn.Module],
    weights: WeightsEnum,
    *,
    in_channels: int,
    pretrained: bool,
    first_conv: str,
    classifier: str,
    min_size: int = 0,
    drop: tuple[str, ...] = (),
    rename: Callable[[dict], dict] | None = None,
    weights_want_half_range: bool = False,
) -> BaselineNet:
    """Build one baseline: RGB network -> ImageNet weights -> grayscale stem -> wrapper.

    Args:
        arch: registered name, shown in error messages.
        make: builds the RGB network with the final classifier, random weights.
        weights: the torchvision weights to load when ``pretrained``.
        in_channels: 1 or 3.
        pretrained: load ImageNet weights.
        first_conv: module path of the first ``nn.Conv2d``.
        classifier: module path of the final layer (not loaded from ImageNet).
        min_size: smallest input side the network's pooling survives.
        drop: checkpoint parts the network does not have (InceptionV3's auxiliary head).
        rename: maps old checkpoint keys to current module names.
        weights_want_half_range: the weights were trained on inputs in [-1, 1], so the
            wrapper converts ImageNet-normalised inputs to that.

    Returns:
        The wrapped network.
    """
    state = None
    if pretrained:  # fetched before building, so a missing file is reported at once
        # check_hash: torchvision's file names end in their hash prefix, so a damaged
        # download is caught rather than trained on
        state = fetch_state_dict(arch, weights.url, lambda: weights.get_state_dict(progress=False, check_hash=True))
    net = make()
    if state is not None:
        load_backbone(arch, net, rename(state) if rename else state, classifier, drop)
    set_in_channels(net, first_conv, in_channels)
    relu_not_inplace(net)
    model = BaselineNet(net, in_channels, min_size)
    if pretrained and weights_want_half_range:
        model.set_input_renormalization(IMAGENET_MEAN, IMAGENET_STD, HALF, HALF)
    return model


def _resnet(
    arch: str,
    make: Callable[..., nn.Module],
    weights: WeightsEnum,
    in_channels: int,
    num_classes: int,
    image_size: int,
    pretrained: bool,
) -> BaselineNet:
    # From scratch at 28 px: the MedMNIST v2 benchmark's CIFAR-style stem (3x3 stride-1
    # conv, no max-pool), which keeps layer4 at 4x4 instead of 1x1. ImageNet filters were
    # learned for the 7x7 stride-2 stem, so a pretrained ResNet keeps that stem at every
    # size (at 28 px layer4 is then 1x1, which the average pool takes).
    cifar_stem = image_size == 28 and not pretrained

    def build() -> nn.Module:
        net = make(weights=None, num_classes=num_classes)
        if cifar_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision inits conv1
            net.maxpool = nn.Identity()
        return net

    return _baseline(
        arch, build, weights, in_channels=in_channels, pretrained=pretrained, first_conv="conv1", classifier="fc"
    )


_TV = dict(paper="torchvision", supports_pretrained=True)


@register_model(
    family="residual CNN",
    description="An 18-layer network with shortcut connections; the MedMNIST benchmark's reference model.",
    gradcam_layer="net.layer4",
    **_TV,
)
def resnet18(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """ResNet-18 (torchvision); CIFAR-style stem at 28 px when trained from scratch.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: load ImageNet weights (then the ImageNet 7x7 stem is kept at 28 px too).

    Returns:
        The wrapped network.
    """
    return _resnet(
        "resnet18", tvm.resnet18, tvm.ResNet18_Weights.DEFAULT, in_channels, num_classes, image_size, pretrained
    )


@register_model(
    family="residual CNN",
    description="A deeper, 50-layer ResNet: usually stronger than ResNet-18 but slower.",
    gradcam_layer="net.layer4",
    **_TV,
)
def resnet50(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """ResNet-50 (torchvision); CIFAR-style stem at 28 px when trained from scratch.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: load ImageNet weights (then the ImageNet 7x7 stem is kept at 28 px too).

    Returns:
        The wrapped network.
    """
    return _resnet(
        "resnet50", tvm.resnet50, tvm.ResNet50_Weights.DEFAULT, in_channels, num_classes, image_size, pretrained
    )


@register_model(
    family="plain CNN",
    description="A classic, very large network of stacked 3x3 filters (about 134 million parameters).",
    gradcam_layer="net.features.28",
    **_TV,
)
def vgg16(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """VGG-16 (torchvision); 28 px inputs are upsampled inside to 32 px.

    Its five max-pools halve 32 px down to 1 px; a 28 px input would reach 0 px at the
    fifth, so the wrapper enlarges it to 32 px (bilinear) first.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: load ImageNet weights.

    Returns:
        The wrapped network.
    """
    return _baseline(
        "vgg16",
        lambda: tvm.vgg16(weights=None, num_classes=num_classes),
        tvm.VGG16_Weights.DEFAULT,
        in_channels=in_channels,
        pretrained=pretrained,
        first_conv="features.0",
        classifier="classifier.6",
        min_size=32,
    )


@register_model(
    family="densely connected CNN",
    description="A 121-layer network in which each layer sees the features of all earlier ones; compact for its depth.",
    gradcam_layer="net.features.denseblock4",
    **_TV,
)
def densenet121(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """DenseNet-121 (torchvision); 28 px inputs are upsampled inside to 32 px.

    Stem and transitions divide the side by 32; the last transition's pool turns a
    28 px input's 1 px map into 0 px, so the wrapper enlarges it to 32 px first.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: load ImageNet weights.

    Returns:
        The wrapped network.
    """
    return _baseline(
        "densenet121",
        lambda: tvm.densenet121(weights=None, num_classes=num_classes),
        tvm.DenseNet121_Weights.DEFAULT,
        in_channels=in_channels,
        pretrained=pretrained,
        first_conv="features.conv0",
        classifier="classifier",
        min_size=32,
        rename=rename_densenet_keys,
    )


@register_model(
    family="mobile CNN",
    description="A light network designed for phones: small and fast.",
    gradcam_layer="net.features.18",
    **_TV,
)
def mobilenet_v2(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """MobileNetV2 (torchvision); its padded stride-2 convolutions work at 28 px as they are.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: load ImageNet weights.

    Returns:
        The wrapped network.
    """
    return _baseline(
        "mobilenet_v2",
        lambda: tvm.mobilenet_v2(weights=None, num_classes=num_classes),
        tvm.MobileNet_V2_Weights.DEFAULT,
        in_channels=in_channels,
        pretrained=pretrained,
        first_conv="features.0.0",
        classifier="classifier.1",
    )


@register_model(
    family="multi-branch CNN",
    description="Google's Inception network, which looks at each region with several filter sizes at once.",
    gradcam_layer="net.Mixed_7c",
    **_TV,
)
def inception_v3(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """InceptionV3 (torchvision, no auxiliary head); inputs under 75 px are upsampled inside to 75 px.

    75 px is the smallest side its unpadded stem and grid reductions survive. Its ImageNet
    weights (ported from TensorFlow) expect inputs in [-1, 1]; torchvision converts with
    ``transform_input``, which only handles RGB, so the wrapper does that conversion
    instead, for grayscale too.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224.
        pretrained: load ImageNet weights.

    Returns:
        The wrapped network.
    """
    return _baseline(
        "inception_v3",
        lambda: tvm.inception_v3(
            weights=None, num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True
        ),
        tvm.Inception_V3_Weights.DEFAULT,
        in_channels=in_channels,
        pretrained=pretrained,
        first_conv="Conv2d_1a_3x3.conv",
        classifier="fc",
        min_size=75,
        drop=("AuxLogits",),
        weights_want_half_range=True,
    )
