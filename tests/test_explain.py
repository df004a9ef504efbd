"""core.explain: one heatmap type for every method and model, sanity checks on what it shows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from core import explain as E
from core.errors import StudioError
from helpers_runs import TinyCNN, normalise, square_images, train


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin-waits
    # that make these tests several times slower when other processes are busy.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained():
    """A TinyCNN that has learned 'bright square present' (class 1), and test images."""
    torch.manual_seed(0)
    images, labels, _ = square_images(256, seed=1)
    model = train(TinyCNN(), images, labels, steps=40, lr=1e-2, batch=32)
    x, y, boxes = square_images(24, seed=7)
    with torch.no_grad():
        acc = (model(normalise(x)).argmax(1) == y).float().mean().item()
    assert acc >= 0.9, f"the sanity model did not learn the task (accuracy {acc:.2f})"
    pos = np.flatnonzero(y.numpy() == 1)[:8]
    return model, x[pos], boxes[pos]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def test_list_methods():
    assert E.list_methods() == ["gradcam", "guided_gradcam", "integrated_gradients", "saliency", "occlusion"]


# ---------------------------------------------------------------------------- every model x method
def _zoo():
    from core.models import list_models

    return list_models()


@pytest.mark.parametrize("name", _zoo())
def test_every_method_on_every_model(name, monkeypatch):
    from core.models import create_model, model_info

    # Cheaper settings than the defaults, same code paths: 2 IG steps, a 3 x 3 occlusion grid.
    monkeypatch.setattr(E, "IG_STEPS", 2)
    monkeypatch.setattr(E, "OCCLUSION_FRACTION", 0.5)
    torch.manual_seed(0)
    model = create_model(name, 1, 3, 28)
    layer = model_info(name, 1, 3, 28).gradcam_layer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 1, 28, 28)
    # The Grad-CAM layer keeps at least 3 x 3 cells at 28 px, or its map would be one colour.
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: seen.update(shape=o.shape))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    model.train()
    assert min(seen["shape"][-2:]) >= 3, (name, layer, tuple(seen["shape"]))
    for method in E.list_methods():
        heat = E.explain(model, x, method=method, layer=layer)
        assert isinstance(heat, np.ndarray) and heat.shape == (28, 28), (name, method)
        assert heat.dtype == np.float32, (name, method)
        assert np.isfinite(heat).all(), (name, method)
        assert heat.min() >= 0.0 and heat.max() <= 1.0, (name, method)
        if method in ("integrated_gradients", "saliency"):
            # Gradient maps of a random network are never flat; a zero map here is a bug.
            # (Grad-CAM and occlusion keep only evidence for the class, which may be none.)
            assert heat.max() == pytest.approx(1.0), (name, method)
    assert _hooks(model) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training, "explain() must give the model back in the mode it came in"


@pytest.mark.parametrize("name", ["mobilenet_v2", "densenet121", "inception_v3", "xception"])
def test_gradcam_is_not_constant_at_28px(name):
    """These networks shrink their last block to 1 x 1 at 28 px; Grad-CAM must hook a larger map."""
    from core.models import create_model, model_info
    from core.models.registry import _REGISTRY

    torch.manual_seed(0)
    model = create_model(name, 1, 3, 28).eval()
    info = model_info(name, 1, 3, 28)
    registered = _REGISTRY[name].gradcam_layer
    assert info.gradcam_layer != registered  # the deepest block is too small at this size ...
    assert model_info(name, 1, 3, 224).gradcam_layer == registered  # ... but right at 224 px

    class Loaded:  # duck-typed LoadedModel, so explain() takes the info's layer by default
        gradcam_layer = info.gradcam_layer

    Loaded.model = model
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    heat = E.explain(Loaded(), x, method="gradcam")
    assert heat.std() > 0.05 and len(np.unique(heat)) > 50, f"{name}: a flat Grad-CAM map at 28 px"
    assert heat.max() == pytest.approx(1.0)
    # The deepest block's 1 x 1 map upsamples to a constant, which normalize_map makes all zeros.
    assert E.explain(model, x, method="gradcam", layer=registered).max() == 0.0


# ---------------------------------------------------------------------------- what the maps show
def _inside_outside(heat: np.ndarray, box) -> tuple[float, float]:
    top, left, bottom, right = box
    mask = np.zeros(heat.shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return float(heat[mask].mean()), float(heat[~mask].mean())


def test_gradcam_finds_the_square(trained):
    model, x, boxes = trained
    hits = 0
    for img, box in zip(x, boxes):
        heat = E.explain(model, normalise(img), target=1, method="gradcam")
        inside, outside = _inside_outside(heat, box)
        top, left, bottom, right = box
        r, c = np.unravel_index(heat.argmax(), heat.shape)
        # The peak within one (upsampled 2x) Grad-CAM cell of the square, and most mass inside it.
        near = top - 2 <= r < bottom + 2 and left - 2 <= c < right + 2
        hits += inside > 2 * outside and near
    assert hits >= 0.8 * len(x), f"Grad-CAM concentrated on the square in only {hits} of {len(x)} images"


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "occlusion", "guided_gradcam"])
def test_other_methods_find_the_square(trained, method):
    model, x, boxes = trained
    ratios = []
    for img, box in zip(x[:4], boxes[:4]):
        inside, outside = _inside_outside(E.explain(model, normalise(img), target=1, method=method), box)
        ratios.append(inside / max(outside, 1e-9))
    assert min(ratios) > 2, f"{method}: inside/outside ratios {np.round(ratios, 1)}"


def test_target_none_is_the_predicted_class(trained):
    model, x, _ = trained
    img = normalise(x[0])
    assert int(model(img[None]).argmax()) == 1
    np.testing.assert_array_equal(E.explain(model, img), E.explain(model, img, target=1))
    assert not np.array_equal(E.explain(model, img, target=0), E.explain(model, img, target=1))


def test_maps_change_when_the_weights_are_randomised(trained):
    """Adebayo et al. (2018): a map that survives weight randomisation does not explain the model."""
    model, x, _ = trained
    for method in ("gradcam", "saliency", "integrated_gradients"):
        trained_maps = [E.explain(model, normalise(img), target=1, method=method) for img in x[:6]]
        corrs = []
        for seed in range(3):
            rand = copy.deepcopy(model)
            torch.manual_seed(seed)
            for m in rand.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            for img, a in zip(x[:6], trained_maps):
                b = E.explain(rand, normalise(img), target=1, method=method)
                corrs.append(np.corrcoef(a.ravel(), b.ravel())[0, 1] if a.std() > 0 and b.std() > 0 else 0.0)
        # Same model twice gives the same map, so a low correlation is the randomisation's doing.
        np.testing.assert_array_equal(trained_maps[0], E.explain(model, normalise(x[0]), target=1, method=method))
        assert np.mean(corrs) < 0.5, f"{method}: mean correlation {np.mean(corrs):.2f} with randomised weights"


# ---------------------------------------------------------------------------- no side effects
def test_no_hooks_weights_flags_or_mode_changed(trained):
    model, x, _ = trained
    model = copy.deepcopy(model)
    model.features[0].weight.requires_grad_(False)  # a frozen layer must stay frozen
    model.train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in E.list_methods():
        E.explain(model, normalise(x[0]), method=method)
        assert _hooks(model) == 0, method
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), method
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags, method
        assert all(p.grad is None for p in model.parameters()), method
        assert all(m.training for m in model.modules()), method


def test_hooks_removed_when_explain_fails(trained):
    model, x, _ = trained
    with pytest.raises(StudioError, match="out of range"):
        E.explain(model, normalise(x[0]), target=5)
    with pytest.raises(StudioError, match="no layer"):
        E.explain(model, normalise(x[0]), layer="features.99")
    assert _hooks(model) == 0


def test_inputs_layers_and_loaded_models(trained):
    model, x, _ = trained
    img = normalise(x[0])
    by_name = E.explain(model, img, layer="features.5")
    np.testing.assert_allclose(E.explain(model, img[None], layer=model.features[5]), by_name)
    np.testing.assert_allclose(E.explain(model, img), by_name)  # default: last Conv2d the forward runs
    with torch.inference_mode():  # the Classify page may call it under inference mode
        np.testing.assert_allclose(E.explain(model, img), by_name)

    class Loaded:  # duck-typed core.inference.LoadedModel
        gradcam_layer = "features.2"

    Loaded.model = model
    assert not np.allclose(E.explain(Loaded(), img), by_name)
    np.testing.assert_allclose(E.explain(Loaded(), img), E.explain(model, img, layer="features.2"))
    with pytest.raises(StudioError, match="one image"):
        E.explain(model, normalise(x[:2]))
    with pytest.raises(StudioError, match="unknown explanation method"):
        E.explain(model, img, method="lime")


def test_normalize_map_edge_cases():
    assert E.normalize_map(np.full((4, 4), 3.0)).max() == 0.0
    out = E.normalize_map(np.array([[np.nan, 1.0], [np.inf, 3.0]]))
    assert np.isfinite(out).all() and out.max() == 1.0 and out.min() == 0.0
    np.testing.assert_allclose(E.normalize_map(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0])
    # Flat up to float32 round-off (a 1 x 1 map upsampled bilinearly): nothing to show.
    v = np.float32(0.3)
    noisy = np.array([[v, np.nextafter(v, np.float32(1)), np.nextafter(v, np.float32(0))]], dtype=np.float32)
    assert E.normalize_map(noisy).max() == 0.0
    # ... but a tiny map that really varies keeps its pattern, whatever its scale.
    np.testing.assert_allclose(E.normalize_map(np.array([1e-9, 2e-9, 3e-9], dtype=np.float32)), [0.0, 0.5, 1.0],
                               atol=1e-6)


def test_guided_relus_cover_functional_calls():
    x = torch.tensor([1.0, 2.0, -1.0, 3.0], requires_grad=True)
    w = torch.tensor([-1.0, 2.0, 5.0, -3.0])
    for relu in (F.relu, torch.relu, torch.Tensor.relu, nn.ReLU(), nn.ReLU(inplace=True)):
        with E.guided_relus():
            y = relu(x * 1.0)
        (g,) = torch.autograd.grad((y * w).sum(), x)
        # Guided: only positive upstream gradients, only where the input was positive.
        assert g.tolist() == [0.0, 2.0, 0.0, 0.0], relu
        (g,) = torch.autograd.grad((relu(x * 1.0) * w).sum(), x)
        assert g.tolist() == [-1.0, 2.0, 0.0, -3.0], relu  # ordinary again after the block


@pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning")
def test_guided_backprop_guides_functional_relus():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(F.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))

    class Modules(Functional):
        def __init__(self):
            super().__init__()
            self.r1, self.r2 = nn.ReLU(), nn.ReLU()

        def forward(self, x):
            return self.head(self.r2(self.conv2(self.r1(self.conv1(x)))).mean(dim=(2, 3)))

    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    functional = Functional()
    modules = Modules()
    modules.load_state_dict(functional.state_dict())
    x = torch.randn(1, 1, 28, 28)
    # Captum alone guides nn.ReLU modules; ours must give the functional twin the same answer.
    reference = GuidedBackprop(modules).attribute(x.clone().requires_grad_(True), target=0)
    torch.testing.assert_close(E._guided_backprop(functional, x, target=0), reference)
    x_req = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(functional(x_req)[0, 0], x_req)
    assert not torch.allclose(reference, plain)
    assert _hooks(functional) == 0 and _hooks(modules) == 0


# ---------------------------------------------------------------------------- overlays
@pytest.mark.parametrize("image", [
    np.zeros((30, 20), dtype=np.uint8),
    np.zeros((30, 20, 3), dtype=np.uint8),
    torch.zeros(1, 30, 20, dtype=torch.uint8),
    torch.zeros(3, 30, 20, dtype=torch.uint8),
    Image.new("L", (20, 30)),
])
def test_overlay_accepts_every_image_type(image):
    heat = np.zeros((7, 7), dtype=np.float32)
    heat[0, 0] = 1.0
    out = E.overlay(image, heat, alpha=0.5)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (20, 30)
    a = np.asarray(out).astype(int)
    # Black image, alpha 0.5: the hot corner is half of jet's dark red, the cold rest half of dark blue.
    assert tuple(a[0, 0]) == (64, 0, 0)
    assert tuple(a[-1, -1]) == (0, 0, 64)


def test_colormaps_and_alpha():
    ramp = np.linspace(0, 1, 11)[None, :]
    jet = E.colorize(ramp, "jet")
    assert jet.shape == (1, 11, 3) and jet.dtype == np.uint8
    assert tuple(jet[0, 0]) == (0, 0, 128) and tuple(jet[0, -1]) == (128, 0, 0)
    assert tuple(E.colorize(ramp, "gray")[0, 5]) == (128, 128, 128)
    grey = np.full((4, 4), 200, dtype=np.uint8)
    assert (np.asarray(E.overlay(grey, np.ones((4, 4)), alpha=0.0)) == 200).all()
    with pytest.raises(StudioError, match="colour map"):
        E.colorize(ramp, "rainbow")
