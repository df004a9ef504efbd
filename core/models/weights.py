"""Loading ImageNet weights into the baseline networks.

Weights come through ``torch.hub``'s cache (``torch.hub.get_dir()/checkpoints``), the
same place torchvision and timm use, so a file a user copies there by hand is found on a
machine without internet. When the file is neither there nor downloadable the user gets
a :class:`~core.errors.StudioError` naming the file and the folder: the studio never
quietly trains from random weights when ImageNet weights were asked for.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from core.errors import StudioError

# What a failed download or an unreadable file raises through torch.hub (URLError and
# socket errors are OSErrors; a bad hash or a truncated file surface as the others).
_FETCH_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


def checkpoint_dir() -> Path:
    """The folder torch.hub (and so torchvision and timm) keeps downloaded weights in.

    Returns:
        ``torch.hub.get_dir()/checkpoints``, read at call time so ``$TORCH_HOME`` counts.
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


_ARCHITECTURE_ONLY = contextvars.ContextVar("architecture_only", default=False)


@contextlib.contextmanager
def architecture_only():
    """Inside this block ``pretrained=True`` builds the pretrained architecture (stem, input
    scaling) without fetching ImageNet weights: for rebuilding a checkpoint that carries
    its own weights, offline."""
    token = _ARCHITECTURE_ONLY.set(True)
    try:
        yield
    finally:
        _ARCHITECTURE_ONLY.reset(token)


def fetch_state_dict(arch: str, url: str, fetch: Callable[[], dict]) -> dict | None:
    """Run ``fetch`` and turn its failures into one sentence for the user.

    Args:
        arch: the model name to show, e.g. ``"resnet18"``.
        url: where the weights file comes from; its last path part is the file name.
        fetch: loads the state dict (from the hub cache, downloading it if needed).

    Returns:
        The state dict (None inside :func:`architecture_only`).

    Raises:
        StudioError: the file is missing and cannot be downloaded, or it cannot be read.
    """
    if _ARCHITECTURE_ONLY.get():
        return None
    filename = os.path.basename(urlparse(url).path)
    folder = checkpoint_dir()
    try:
        return fetch()
    except _FETCH_ERRORS as exc:
        reason = str(exc).strip() or type(exc).__name__
        if (folder / filename).exists():
            raise StudioError(
                f"The ImageNet weights file {folder / filename} for {arch} could not be read ({reason}); "
                f"delete it and put a fresh copy from {url} there, or train without pretrained weights."
            ) from exc
        raise StudioError(
            f"The ImageNet weights file {filename} for {arch} is not in {folder} and could not be downloaded "
            f"({reason}); download it from {url} into that folder, or train without pretrained weights."
        ) from exc


def load_backbone(arch: str, net: nn.Module, state: dict, classifier: str, drop: tuple[str, ...] = ()) -> None:
    """Load ImageNet weights into ``net`` except its (already fresh, num_classes-wide) classifier.

    Args:
        arch: the model name to show in errors.
        net: an RGB network built with the final number of classes.
        state: the ImageNet state dict.
        classifier: module path of the classifier whose ImageNet weights are dropped.
        drop: further module paths to ignore (e.g. InceptionV3's auxiliary head).

    Raises:
        StudioError: the file's tensors do not fit the network (a wrong or damaged file).
    """
    prefixes = tuple(p + "." for p in (classifier, *drop))
    state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise _misfit(arch, str(exc).splitlines()[-1].strip()) from exc
    missing = [k for k in missing if not k.startswith(classifier + ".")]
    if missing or unexpected:
        raise _misfit(arch, f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def _misfit(arch: str, detail: str) -> StudioError:
    return StudioError(
        f"The ImageNet weights file for {arch} in {checkpoint_dir()} does not fit the network ({detail}); "
        "delete it so it is downloaded again, or train without pretrained weights."
    )


# torchvision's DenseNet checkpoints predate its module names: "denselayer1.norm.1.weight"
# is what "denselayer1.norm1.weight" was called then.
_DENSENET_OLD_KEY = re.compile(r"\.(norm|relu|conv)\.([12])\.")


def rename_densenet_keys(state: dict) -> dict:
    """Map old torchvision DenseNet checkpoint keys onto the current module names.

    Args:
        state: a DenseNet state dict (old or current names).

    Returns:
        A new dict with current names; current names pass through unchanged.
    """
    return {_DENSENET_OLD_KEY.sub(r".\1\2.", k): v for k, v in state.items()}


def set_in_channels(net: nn.Module, path: str, in_channels: int) -> None:
    """Replace the RGB first convolution at ``path`` by one taking ``in_channels``.

    A grayscale convolution's filters are the RGB filters summed over the colour axis:
    a gray image is R = G = B, so the summed filter answers a gray image exactly as the
    RGB filter answers its colour copy. With random weights the sum of three filters has
    the spread a fan-in initialisation would give a third of the fan-in.

    Args:
        net: the network, modified in place.
        path: dotted path of its first ``nn.Conv2d``.
        in_channels: 1 or 3 (3 leaves the network as it is).

    Raises:
        ValueError: ``in_channels`` is neither 1 nor 3 (the registry checks this first).
    """
    conv = net.get_submodule(path)
    if in_channels == conv.in_channels:
        return
    if in_channels != 1 or conv.in_channels != 3:
        raise ValueError(
            f"can only turn an RGB first convolution into a grayscale one, not {conv.in_channels}->{in_channels}"
        )
    gray = nn.Conv2d(
        1,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        gray.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            gray.bias.copy_(conv.bias)
    parent, _, attr = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, attr, gray)


def relu_not_inplace(net: nn.Module) -> None:
    """Turn the network's in-place ReLUs into ordinary ones.

    Grad-CAM keeps a hooked layer's output; an in-place ReLU right after it (VGG's
    convolutions) would overwrite that output and break the backward pass.

    Args:
        net: the network, modified in place.
    """
    for module in net.modules():
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            module.inplace = False
