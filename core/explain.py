"""Why did the model say that? Captum attributions, all returned as one kind of heatmap.

Every method answers with an ``H x W`` float32 array in [0, 1] at the input resolution, so
the Classify page, ``python -m core predict --explain`` and the tests handle one type:

* ``gradcam``: Captum's ``LayerGradCam`` on the layer the model's info names (the last
  convolution for the CNNs and the CNN-LSTM hybrids), ReLU'd and upsampled bilinearly with
  ``LayerAttribution.interpolate``. Coarse (the layer's resolution) but class-specific.
* ``guided_gradcam``: guided backpropagation times the upsampled Grad-CAM map, which is what
  Captum's ``GuidedGradCam`` computes. We compose the two Captum parts ourselves so that
  ReLUs called as functions (``F.relu``, ``torch.relu``, ``Tensor.relu``) are guided as well,
  not only ``nn.ReLU`` modules (see :func:`guided_relus`).
* ``integrated_gradients``: Captum's ``IntegratedGradients`` from an all-zero baseline in
  normalised space (the dataset's mean grey image), :data:`IG_STEPS` steps in one batch.
  Scaled per image by its 99th percentile (:func:`robust_normalize`), not min-max.
* ``saliency``: the absolute input gradient (Captum's ``Saliency``).
* ``occlusion``: Captum's ``Occlusion`` with a square window about 1/7 of the image side
  (4 px at 28 px, 32 px at 224 px) and half that stride, filled with 0 (mean grey).

Reducing to one channel: the pixel methods (guided Grad-CAM, integrated gradients,
saliency) sum the absolute attribution over the colour channels, because evidence for and
against the class both mark a pixel the model looked at. Occlusion keeps the positive part
(the window lowered the class score when hidden) of the channel mean; every channel of a
window gets the same value. Grad-CAM is ReLU'd by definition. The result is min-max scaled to
[0, 1]; a constant (or empty) map becomes all zeros, never NaN.

The model is put in eval mode for the call and its mode restored afterwards; its weights
and ``requires_grad`` flags are never touched; every hook registered here or by Captum is
removed before returning, also on errors.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from core.errors import StudioError
from core.explain_draw import COLORMAPS, colorize, overlay  # noqa: F401 - part of this module's API
from core.explain_scale import FLAT_ULPS, IG_PERCENTILE, normalize_map, robust_normalize  # noqa: F401
from core.explain_words import METHOD_DESCRIPTIONS, METHODS_DISAGREE  # noqa: F401 - shown beside the maps

METHODS = ("gradcam", "guided_gradcam", "integrated_gradients", "saliency", "occlusion")

METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "integrated_gradients": "Integrated Gradients",
    "saliency": "Saliency (input gradient)",
    "occlusion": "Occlusion",
}

#: Integrated-gradients steps. 32 Gauss-Legendre points keep the completeness error small for
#: these small networks while costing one batched forward/backward of 32 images.
IG_STEPS = 32

#: Occlusion window side as a fraction of the image side; the stride is half the window.
#: About 1/7 gives a 13 x 13 grid of windows (169 forward passes) at every image size.
OCCLUSION_FRACTION = 1 / 7

#: Occluded copies evaluated per forward pass (memory vs. number of passes).
OCCLUSION_BATCH = 64


def list_methods() -> list[str]:
    """The attribution methods :func:`explain` offers.

    Returns:
        ``["gradcam", "guided_gradcam", "integrated_gradients", "saliency", "occlusion"]``.
    """
    return list(METHODS)


def explain(model: Any, image_tensor: torch.Tensor, target: int | None = None, method: str = "gradcam",
            layer: nn.Module | str | None = None) -> np.ndarray:
    """Attribute one prediction to the input pixels.

    Args:
        model: an ``nn.Module`` returning ``(1, K)`` logits, or a
            :class:`core.inference.LoadedModel` (its Grad-CAM layer is then known).
        image_tensor: one normalised float image, ``(C, H, W)`` or ``(1, C, H, W)``
            (see :func:`core.inference.preprocess`).
        target: the class index to explain; None explains the predicted class.
        method: one of :func:`list_methods`.
        layer: for ``gradcam`` and ``guided_gradcam``, the module to hook or its dotted path
            (``model.get_submodule``). None takes the LoadedModel's Grad-CAM layer, else the
            last ``nn.Conv2d`` the forward pass runs (the registry's choice for every model
            that does not name one); for an ensemble, the sum of the maps of its members'
            layers (``gradcam_layers``).

    Returns:
        A float32 ``(H, W)`` array in [0, 1] (all zeros when the attribution is constant).

    Raises:
        StudioError: unknown method, a batch of more than one image, a target out of range,
            or a layer that is not in the model.
    """
    net, default_layer = _unwrap(model)
    if method not in METHODS:
        raise StudioError(f"unknown explanation method '{method}'; choose one of: {', '.join(METHODS)}.")
    x = _as_batch(image_tensor)
    with _explaining(net) as device:
        x = x.to(device=device, dtype=_dtype(net)).detach().clone()
        num_classes, predicted = _predict(net, x)
        # Layer gradients need a graph even when every weight is frozen.
        x.requires_grad_(True)
        if target is None:
            target = predicted
        target = int(target)
        if not 0 <= target < num_classes:
            raise StudioError(f"target class {target} is out of range; the model has {num_classes} classes (0 to {num_classes - 1}).")
        size = tuple(x.shape[-2:])
        if method in ("gradcam", "guided_gradcam"):
            # An ensemble (core.models.ensemble): the sum of every member's map, unless a layer is named.
            paths = getattr(net, "gradcam_layers", None) if layer is None else None
            hooked = [_resolve_layer(net, p, x) for p in paths] if paths else \
                [_resolve_layer(net, layer if layer is not None else default_layer, x)]
            cam = sum(_gradcam(net, h, x, target, size) for h in hooked)
            if method == "gradcam":
                heat = cam[0, 0]
            else:
                heat = (_guided_backprop(net, x, target) * cam).abs().sum(dim=1)[0]
        elif method == "integrated_gradients":
            heat = _integrated_gradients(net, x, target).abs().sum(dim=1)[0]
            return robust_normalize(heat.detach().float().cpu().numpy(), IG_PERCENTILE)
        elif method == "saliency":
            from captum.attr import Saliency

            heat = Saliency(net).attribute(x, target=target, abs=True).sum(dim=1)[0]
        else:
            heat = _occlusion(net, x, target).mean(dim=1)[0].clamp(min=0)
    return normalize_map(heat.detach().float().cpu().numpy())


# --------------------------------------------------------------------------- the methods
def _gradcam(net: nn.Module, layer: nn.Module, x: torch.Tensor, target: int, size: tuple[int, int]) -> torch.Tensor:
    """(1, 1, H, W) Grad-CAM, ReLU'd, bilinearly upsampled to the input size."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(net, layer).attribute(x, target=target, relu_attributions=True)
    if isinstance(cam, tuple):  # a layer with several outputs: Captum returns one map each
        cam = cam[0]
    if cam.ndim != 4:
        raise StudioError(
            f"Grad-CAM needs a layer with a (batch, channels, height, width) output, but "
            f"{type(layer).__name__} gives shape {tuple(cam.shape)}; pick a convolutional layer."
        )
    cam = cam.sum(dim=1, keepdim=True)  # one map, whatever Captum kept
    cam = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")
    return F.relu(cam)


def _guided_backprop(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """(1, C, H, W) guided-backpropagation gradients, every kind of ReLU guided."""
    from captum.attr import GuidedBackprop

    with warnings.catch_warnings():
        # Captum warns on every call that it sets (and later removes) hooks on nn.ReLU modules.
        warnings.simplefilter("ignore", UserWarning)
        with guided_relus():
            return GuidedBackprop(net).attribute(x.clone().requires_grad_(True), target=target)


def _integrated_gradients(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(net).attribute(x.clone().requires_grad_(True), baselines=torch.zeros_like(x),
                                              target=target, n_steps=IG_STEPS, internal_batch_size=IG_STEPS)


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """The occlusion window side and stride for an image: about 1/7 of the short side.

    Args:
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(window, stride)`` in pixels, window at least 2 and stride at least 1.
    """
    window = max(2, int(round(min(height, width) * OCCLUSION_FRACTION)))
    return window, max(1, window // 2)


def _occlusion(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    from captum.attr import Occlusion

    c, h, w = x.shape[1:]
    window, stride = occlusion_window(h, w)
    return Occlusion(net).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                    baselines=0.0, target=target, perturbations_per_eval=OCCLUSION_BATCH)


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients where the input was positive."""

    @staticmethod
    def forward(ctx, x):  # noqa: D401 - autograd's hook
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):  # noqa: D401 - autograd's hook
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


class _GuidedReLUMode(TorchFunctionMode):
    # The out-of-place ReLUs: F.relu (also what nn.ReLU, in-place or not, calls), torch.relu
    # and Tensor.relu. Explicitly in-place calls (relu_) are left alone, because code may
    # rely on the tensor being changed where it is.
    _RELUS = (F.relu, torch.relu, torch.Tensor.relu)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._RELUS and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            return _GuidedReLU.apply(args[0])
        return func(*args, **kwargs)


@contextlib.contextmanager
def guided_relus() -> Iterator[None]:
    """Within the block, ReLUs backpropagate like guided backpropagation.

    Captum's ``GuidedBackprop`` hooks ``nn.ReLU`` modules only, so a model that calls
    ``F.relu``/``torch.relu``/``Tensor.relu`` in its forward would get plain gradients
    there. A torch-function mode (thread-local, so other threads are unaffected, and gone
    when the block ends; nothing is patched or hooked) swaps those calls for a ReLU with a
    guided backward. Other activations (GELU, SiLU, LeakyReLU, ReLU6) and in-place
    ``relu_`` calls keep their ordinary gradients.
    """
    with _GuidedReLUMode():
        yield


# --------------------------------------------------------------------------- helpers
def _unwrap(model: Any) -> tuple[nn.Module, str | None]:
    """(the network, its Grad-CAM layer path if known)."""
    if isinstance(model, nn.Module):
        return model, None
    net = getattr(model, "model", None)
    if isinstance(net, nn.Module):  # a LoadedModel
        return net, getattr(model, "gradcam_layer", None)
    raise StudioError(f"explain() needs a torch model or a loaded run model, not {type(model).__name__}.")


def _as_batch(image_tensor: Any) -> torch.Tensor:
    x = torch.as_tensor(image_tensor)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise StudioError(
            f"explain() takes one image of shape (C, H, W) or (1, C, H, W), not {tuple(x.shape)}; "
            "explain the images of a batch one at a time."
        )
    if not x.is_floating_point():
        raise StudioError("explain() takes a normalised float image; run core.inference.preprocess on uint8 images first.")
    return x


def _dtype(net: nn.Module) -> torch.dtype:
    p = next(net.parameters(), None)
    return p.dtype if p is not None and p.is_floating_point() else torch.float32


@contextlib.contextmanager
def _explaining(net: nn.Module) -> Iterator[torch.device]:
    """Eval mode and gradients on for the block; the module modes are restored afterwards.

    Yields:
        The device of the model's parameters (CPU for a parameterless model).
    """
    modes = {m: m.training for m in net.modules()}
    p = next(net.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    # cuDNN computes LSTM gradients only in training mode; the native kernels do it in eval.
    has_rnn = any(isinstance(m, nn.RNNBase) for m in net.modules())
    cudnn = torch.backends.cudnn.flags(enabled=False) if has_rnn and device.type == "cuda" else contextlib.nullcontext()
    try:
        net.eval()
        with torch.inference_mode(False), torch.enable_grad(), cudnn:
            yield device
    finally:
        for m, was_training in modes.items():
            m.training = was_training


def _predict(net: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(number of classes, predicted class) of a one-image batch."""
    with torch.no_grad():
        out = net(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        raise StudioError("explain() needs a model that returns one (batch, classes) tensor of logits.")
    return int(out.shape[1]), int(out[0].argmax())


def _resolve_layer(net: nn.Module, layer: nn.Module | str | None, x: torch.Tensor) -> nn.Module:
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in net.modules()):
            raise StudioError(f"the Grad-CAM layer {type(layer).__name__} is not part of the model; pass one of its modules.")
        return layer
    if isinstance(layer, str):
        try:
            return net.get_submodule(layer)
        except AttributeError:
            convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
            hint = f" (its convolutions: {', '.join(convs[-5:])})" if convs else ""
            raise StudioError(f"the model has no layer '{layer}'{hint}; pass a dotted module path.") from None
    return last_conv_run(net, x)


def last_conv_run(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last ``nn.Conv2d`` that a forward pass on ``x`` runs (forward hooks, removed again).

    Args:
        net: the model.
        x: an input batch it accepts.

    Returns:
        The module.

    Raises:
        StudioError: the forward pass runs no 2-D convolution.
    """
    seen: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, _i, _o: seen.append(mod))
               for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise StudioError(f"{type(net).__name__} runs no Conv2d layer, so Grad-CAM has nothing to hook; "
                          "use integrated_gradients, saliency or occlusion.")
    return seen[-1]
