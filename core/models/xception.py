"""Xception from timm, the baseline of QuadSNet's paper (seed 003, Chollet 2017).

timm's ``legacy_xception`` is Chollet's original network (entry, middle and exit flows,
about 20.8 M parameters without the 1000-class head); the other timm Xceptions are the
later, deeper "aligned" variants. Its first convolutions are unpadded and its pools are
padded, so a 28 px input still ends in a 1x1 map: no upsampling is needed.
"""

from __future__ import annotations

import torch

from core.errors import StudioError
from core.models.layers import BaselineNet
from core.models.registry import HALF, IMAGENET_MEAN, IMAGENET_STD, register_model
from core.models.weights import fetch_state_dict, load_backbone, relu_not_inplace, set_in_channels

_TIMM_NAME = "legacy_xception"


@register_model(
    paper="timm",
    family="separable-convolution CNN",
    description="Xception: an Inception-style network built from depthwise-separable filters (QuadSNet's comparison).",
    gradcam_layer="net.conv4",
    supports_pretrained=True,
)
def xception(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> BaselineNet:
    """Xception (timm ``legacy_xception``), works at every studio size as it is.

    Its ImageNet weights (ported from Keras) expect inputs in [-1, 1]; the studio feeds
    every pretrained model ImageNet-normalised inputs, so the wrapper converts.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits.
        image_size: 28, 64, 128 or 224 (the network adapts; the size is not used).
        pretrained: load ImageNet weights (through the torch.hub cache).

    Returns:
        The wrapped network; Grad-CAM hooks ``net.conv4``, the last separable convolution.
    """
    import timm  # here, not at the top: importing timm takes a second and only this model needs it

    state = None
    if pretrained:  # fetched before building, so a missing file is reported at once
        url = getattr(timm.models.get_pretrained_cfg(_TIMM_NAME), "url", None)
        if not url:  # a timm release that serves these weights only from the Hugging Face hub
            raise StudioError(
                f"This timm version names no download address for {_TIMM_NAME}'s ImageNet weights; "
                "train xception without pretrained weights."
            )
        # timm would fetch the same file into the same folder; doing it here gives the
        # same error messages and grayscale handling as the torchvision baselines
        state = fetch_state_dict(
            "xception", url, lambda: torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
        )
    net = timm.create_model(_TIMM_NAME, pretrained=False, num_classes=num_classes)
    if state is not None:
        load_backbone("xception", net, state, classifier="fc")
    set_in_channels(net, "conv1", in_channels)
    relu_not_inplace(net)
    model = BaselineNet(net, in_channels)
    if pretrained:
        model.set_input_renormalization(IMAGENET_MEAN, IMAGENET_STD, HALF, HALF)
    return model
