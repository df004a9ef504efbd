"""The model registry and every registered network (core.models).

Each network is built at 1 and 3 channels and 28 and 64 px (and 128/224 px for three of
them), run forward and backward on a batch of two, and stepped once with SGD. The
Grad-CAM layer is hooked during that pass, so the test also shows Grad-CAM gets a
spatial map and a gradient there.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from core.errors import ConfigError, StudioError
from core.models import IMAGENET_MEAN, IMAGENET_STD, create_model, list_models, model_info, register_model, registry
from core.models.arn_cnn import Attention
from core.models.layers import BaselineNet

SEED_MODELS = {  # name -> recipe key
    "medvcnn": "medvcnn",
    "medvlstm": "medvlstm",
    "arn_cnn": "arn_cnn",
    "arn_cnn_no_attention": "arn_cnn",
    "arn_cnn_no_residual": "arn_cnn",
    "snet": "snet",
    "quadsnet": "quadsnet",
    "bloodcnn": "bloodcnn",
    "cnn_lstm": "cnn_lstm",
}
BASELINES = ["resnet18", "resnet50", "vgg16", "densenet121", "mobilenet_v2", "inception_v3", "xception"]

COMBOS = [(n, c, s) for n in list_models() for c in (1, 3) for s in (28, 64)]
COMBOS += [(n, c, s) for n in ("medvcnn", "resnet18", "arn_cnn") for c in (1, 3) for s in (128, 224)]

# Side length of the Grad-CAM layer's map, worked out from the architectures by hand.
GRADCAM_SIDE = {
    ("medvcnn", 28): 8,  # 28 -3-> 26 -3-> 24 -pool-> 12 -3-> 10 -3-> 8, padded conv5 keeps 8
    ("medvcnn", 64): 26,  # 64 -> 62 -> 60 -> 30 -> 28 -> 26
    # Where the registered layer's map would be under 3 x 3, model_info picks the deepest
    # sibling block with at least 3 x 3 cells (a 1 x 1 map makes Grad-CAM one colour).
    ("arn_cnn", 28): 4,  # 28 -> 26 -pool-> 13 -block-> 13 -pool-> 6 -3-> 4 (att1); conv2 would give 2
    ("arn_cnn", 64): 11,  # 64 -> 62 -> 31 -> 31 -> 15 -> 13 -> 11
    ("quadsnet", 28): 14,  # only the first block pools (later inputs are < 16 px)
    ("quadsnet", 64): 8,  # 64 -> 32 -> 16 -> 8, the fourth block does not pool
    ("quadsnet", 224): 14,  # not tested at 224; kept to document the rule
    ("snet", 28): 3,  # 28 -> 26 -> 13 -> 11 -> 5 -> 3
    ("bloodcnn", 28): 11,  # 28 -> 26 -> 13 -> 11
    ("cnn_lstm", 28): 14,  # padded convs, one pool
    ("resnet18", 28): 4,  # CIFAR stem: 28 -> 28 -> 14 -> 7 -> 4
    ("resnet18", 64): 4,  # ImageNet stem: layer4 is /32 (2 x 2), so layer3 (/16)
    ("resnet18", 224): 7,
    ("vgg16", 28): 4,  # upsampled to 32; conv 4_3 (three pools), conv 5_3 would give 2
    ("densenet121", 28): 4,  # upsampled to 32; denseblock2 (/8), denseblock4 would give 1
    ("inception_v3", 28): 3,  # upsampled to 75; Mixed_6e, Mixed_7c would give 1
    ("inception_v3", 64): 3,
    ("xception", 28): 3,  # block2; conv4 would give 1
    ("mobilenet_v2", 28): 4,  # features.6; features.18 would give 1
}
# Side the wrapped ImageNet network receives when the input is smaller than it accepts.
MIN_SIDE = {"vgg16": 32, "densenet121": 32, "inception_v3": 75}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run these CPU-heavy tests on one intra-op thread, then restore the setting.

    With more runnable processes than cores (tests of other modules running beside
    these), two OpenMP threads that wait on each other ran the networks 5-10x slower
    than one thread did.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _is_conv_layer(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) or any(isinstance(m, nn.Conv2d) for m in module.modules())


def test_registered_names():
    assert list_models() == sorted([*SEED_MODELS, *BASELINES])


@pytest.mark.parametrize("name,in_channels,size", COMBOS, ids=[f"{n}-{c}ch-{s}px" for n, c, s in COMBOS])
def test_forward_backward_and_one_sgd_step(name, in_channels, size):
    torch.manual_seed(0)
    num_classes = 3
    model = create_model(name, in_channels, num_classes, size)
    info = model_info(name, in_channels, num_classes, size)

    # the info record describes this very network
    params = dict(model.named_parameters())
    assert info.params == sum(p.numel() for p in params.values() if p.requires_grad)
    assert info.has_dropout == any(isinstance(m, nn.Dropout) for m in model.modules())
    layer = model.get_submodule(info.gradcam_layer)
    assert _is_conv_layer(layer), f"{info.gradcam_layer} holds no Conv2d"

    seen = {}

    def keep_map(_module, _inputs, output):
        output.retain_grad()
        seen["map"] = output

    hooks = [layer.register_forward_hook(keep_map)]
    if isinstance(model, BaselineNet):
        hooks.append(model.net.register_forward_pre_hook(lambda _m, args: seen.update(net_input=args[0].shape)))

    model.train()
    x = torch.randn(2, in_channels, size, size)
    logits = model(x)
    for h in hooks:
        h.remove()
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()

    fmap = seen["map"]
    assert fmap.dim() == 4 and fmap.shape[0] == 2
    if (name, size) in GRADCAM_SIDE:
        assert tuple(fmap.shape[-2:]) == (GRADCAM_SIDE[name, size],) * 2
    if isinstance(model, BaselineNet):
        side = max(size, MIN_SIDE.get(name, 0))
        assert tuple(seen["net_input"]) == (2, in_channels, side, side)

    model.eval()  # inference on one image is what the classify page does
    with torch.no_grad():
        a, b = model(x[:1]), model(x[:1])
    assert a.shape == (1, num_classes) and torch.isfinite(a).all() and torch.equal(a, b)
    model.train()

    before = {k: p.detach().clone() for k, p in params.items()}
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert fmap.grad is not None and fmap.grad.abs().sum() > 0  # Grad-CAM has a gradient to weigh
    assert [k for k, p in params.items() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    # a batch of two through BatchNorm on 1x1 maps (DenseNet at 28 px) gives gradients in
    # the thousands; a small step keeps the weights finite
    torch.optim.SGD(model.parameters(), lr=1e-3).step()

    changed = [k for k, p in params.items() if not torch.equal(p.detach(), before[k])]
    names = list(params)
    assert names[0] in changed and names[-1] in changed  # first layer and classifier both learned
    # biases right before a BatchNorm get a gradient of ~0 and may not move; nothing else
    assert len(changed) >= 0.75 * len(names)
    assert all(torch.isfinite(p).all() for p in params.values())


def test_medvcnn_parameter_count_by_hand():
    # 28 px, 1 channel, 2 classes. Conv: k*k*in*out + out; BatchNorm: 2*out (weight, bias).
    # map: 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> 8 (conv5 padded) -> pool 4: 64 * 4 * 4 = 1024
    layers = [
        ("conv1 3x3 1->16", 3 * 3 * 1 * 16 + 16),  # 160
        ("bn1", 2 * 16),  # 32
        ("conv2 3x3 16->16", 3 * 3 * 16 * 16 + 16),  # 2,320
        ("bn2", 2 * 16),  # 32
        ("conv3 3x3 16->64", 3 * 3 * 16 * 64 + 64),  # 9,280
        ("bn3", 2 * 64),  # 128
        ("conv4 3x3 64->64", 3 * 3 * 64 * 64 + 64),  # 36,928
        ("bn4", 2 * 64),  # 128
        ("conv5 3x3 64->64", 3 * 3 * 64 * 64 + 64),  # 36,928
        ("bn5", 2 * 64),  # 128
        ("fc1 1024->128", 64 * 4 * 4 * 128 + 128),  # 131,200
        ("fc2 128->128", 128 * 128 + 128),  # 16,512
        ("fc3 128->2", 128 * 2 + 2),  # 258
    ]
    expected = sum(count for _, count in layers)
    assert expected == 234_034
    assert model_info("medvcnn", 1, 2, 28).params == expected
    assert sum(p.numel() for p in create_model("medvcnn", 1, 2, 28).parameters()) == expected


def test_arn_cnn_parameter_count_by_hand():
    # 64 px, 1 channel, 6 classes (MedNIST). A(c) = two 1x1 convs c->c: 2 * (c*c + c).
    # map: 64 -valid-> 62 -pool-> 31 -block (same)-> 31 -pool-> 15 -valid-> 13 -valid-> 11 -pool-> 5
    def attention(c):
        return 2 * (c * c + c)

    layers = [
        ("stem conv 3x3 1->32", 3 * 3 * 1 * 32 + 32),  # 320
        ("A(32) x2", 2 * attention(32)),  # 4,224
        ("block conv1 3x3 32->64", 3 * 3 * 32 * 64 + 64),  # 18,496
        ("block bn1", 2 * 64),  # 128
        ("block conv2 3x3 64->64", 3 * 3 * 64 * 64 + 64),  # 36,928
        ("block bn2", 2 * 64),  # 128
        ("block A(64)", attention(64)),  # 8,320
        ("block skip 1x1 32->64", 1 * 1 * 32 * 64 + 64),  # 2,112
        ("conv 3x3 64->64", 3 * 3 * 64 * 64 + 64),  # 36,928
        ("A(64)", attention(64)),  # 8,320
        ("conv 3x3 64->256", 3 * 3 * 64 * 256 + 256),  # 147,712
        ("A(256) x4", 4 * attention(256)),  # 526,336
        ("conv 1x1 256->125", 1 * 1 * 256 * 125 + 125),  # 32,125
        ("dense 125*5*5->256", 125 * 5 * 5 * 256 + 256),  # 800,256
        ("output 256->6", 256 * 6 + 6),  # 1,542
    ]
    expected = sum(count for _, count in layers)
    assert expected == 1_623_875  # "about 1.62 M"
    assert model_info("arn_cnn", 1, 6, 64).params == expected
    assert sum(p.numel() for p in create_model("arn_cnn", 1, 6, 64).parameters()) == expected


def test_arn_cnn_ablation_switches():
    full = create_model("arn_cnn", 1, 6, 64)
    no_att = create_model("arn_cnn_no_attention", 1, 6, 64)
    no_res = create_model("arn_cnn_no_residual", 1, 6, 64)
    count = lambda m: sum(isinstance(x, Attention) for x in m.modules())  # noqa: E731
    assert (count(full), count(no_att), count(no_res)) == (8, 0, 8)  # stem 2, block 1, then 1 + 4
    assert full.block.skip is not None and no_att.block.skip is not None and no_res.block.skip is None
    assert (full.attention, full.residual, no_att.attention, no_res.residual) == (True, True, False, False)
    # without attention: minus 2*A(32) + 2*A(64) + 4*A(256); without residual: minus the 1x1 skip
    assert model_info("arn_cnn_no_attention", 1, 6, 64).params == 1_623_875 - 2 * 2112 - 2 * 8320 - 4 * 131_584
    assert model_info("arn_cnn_no_residual", 1, 6, 64).params == 1_623_875 - 2112


def test_resnet_stem_follows_the_medmnist_benchmark():
    small, large = create_model("resnet18", 1, 2, 28), create_model("resnet18", 1, 2, 64)
    assert small.net.conv1.kernel_size == (3, 3) and small.net.conv1.stride == (1, 1)
    assert isinstance(small.net.maxpool, nn.Identity)
    assert large.net.conv1.kernel_size == (7, 7) and large.net.conv1.stride == (2, 2)
    assert isinstance(large.net.maxpool, nn.MaxPool2d)
    assert small.net.conv1.in_channels == 1


def test_model_info_records():
    for name in list_models():
        info = model_info(name, in_channels=1, num_classes=4, image_size=64)
        assert (info.name, info.in_channels, info.num_classes, info.image_size) == (name, 1, 4, 64)
        assert info.description and "\n" not in info.description
        assert info.family and info.paper
        assert info.mean == info.std == (0.5, 0.5, 0.5)
        assert info.normalization(False) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        if name in SEED_MODELS:
            assert info.recipe == SEED_MODELS[name] and "seed 00" in info.paper
            assert not info.supports_pretrained and info.pretrained_mean is None
            with pytest.raises(StudioError, match="no pretrained weights"):
                info.normalization(True)
        else:
            assert info.recipe == "default" and info.paper == ("timm" if name == "xception" else "torchvision")
            assert info.supports_pretrained
            assert info.normalization(True) == (IMAGENET_MEAN, IMAGENET_STD)
    info = model_info("medvcnn")
    assert (info.in_channels, info.num_classes, info.image_size) == (3, 2, 28)  # the defaults
    assert info.paper == "MedvCNN (seed 000)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.params = 0
    assert model_info("medvcnn") is info  # cached
    assert model_info("medvcnn", 3, 5, 28).params == info.params + 3 * 129  # three more output units


def test_seed_models_refuse_pretrained():
    for name in SEED_MODELS:
        with pytest.raises(StudioError, match=f"{name}.*no pretrained weights"):
            create_model(name, 1, 2, 28, pretrained=True)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        create_model("resnet19", 3, 2, 28)
    assert isinstance(err.value, ConfigError)
    assert "resnet19" in str(err.value)
    assert all(name in str(err.value) for name in list_models())
    with pytest.raises(ConfigError, match="medvcnn"):
        model_info("nope")


@pytest.mark.parametrize("size", [0, 32, 96, 256, 28.0, "28"])
def test_bad_image_size(size):
    with pytest.raises(ConfigError, match="28, 64, 128, 224"):
        create_model("medvcnn", 1, 2, size)
    with pytest.raises(ConfigError):
        model_info("medvcnn", 1, 2, size)


def test_bad_channels_and_classes():
    with pytest.raises(ConfigError, match="grayscale"):
        create_model("medvcnn", 2, 2, 28)
    with pytest.raises(ConfigError, match="classes"):
        create_model("medvcnn", 1, 0, 28)


def test_numpy_integers_are_accepted():
    np = pytest.importorskip("numpy")
    model = create_model("bloodcnn", np.int64(1), np.int64(4), np.int64(28))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def test_register_model_timm_style(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave the real one as it was

    @register_model
    def tiny_net(in_channels: int, num_classes: int, image_size: int, pretrained: bool = False) -> nn.Module:
        """A one-convolution test network.

        More text that is not the description.
        """
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3),
            nn.Conv2d(4, 5, 3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, num_classes),
        )

    assert "tiny_net" in list_models()
    assert create_model("tiny_net", 1, 3, 28)(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    info = model_info("tiny_net", 1, 3, 28)
    assert info.description == "A one-convolution test network."
    assert info.gradcam_layer == "1"  # the last Conv2d when none is named
    assert info.params == (9 * 4 + 4) + (9 * 4 * 5 + 5) + (5 * 3 + 3)
    assert (info.paper, info.recipe, info.supports_pretrained) == ("custom", "default", False)
    with pytest.raises(StudioError, match="no pretrained weights"):
        create_model("tiny_net", 1, 3, 28, pretrained=True)

    with pytest.raises(ValueError, match="already registered"):
        register_model(tiny_net)

    def kwargs_net(in_channels, num_classes, image_size, **kwargs):
        return nn.Identity()

    with pytest.raises(ValueError, match="must take exactly"):
        register_model(kwargs_net)


def test_baseline_input_renormalization():
    # ImageNet-normalised pixels in, [-1, 1]-normalised pixels out (what InceptionV3's and
    # Xception's ImageNet weights expect)
    wrapper = BaselineNet(nn.Identity(), in_channels=3)
    pixels = torch.rand(2, 3, 5, 5)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.equal(wrapper(pixels), pixels)  # identity until set
    wrapper.set_input_renormalization(IMAGENET_MEAN, IMAGENET_STD, (0.5,) * 3, (0.5,) * 3)
    assert torch.allclose(wrapper((pixels - mean) / std), (pixels - 0.5) / 0.5, atol=1e-5)
    # the conversion lives in buffers, so a checkpoint carries it
    rebuilt = BaselineNet(nn.Identity(), in_channels=3)
    rebuilt.load_state_dict(wrapper.state_dict())
    assert torch.allclose(rebuilt((pixels - mean) / std), (pixels - 0.5) / 0.5, atol=1e-5)
    gray = BaselineNet(nn.Identity(), in_channels=1, min_size=8)
    gray.set_input_renormalization(IMAGENET_MEAN, IMAGENET_STD, (0.5,) * 3, (0.5,) * 3)
    out = gray((pixels[:, :1] - IMAGENET_MEAN[0]) / IMAGENET_STD[0])
    assert out.shape == (2, 1, 8, 8)  # upsampled to min_size
    assert torch.allclose(
        out.mean(), F.interpolate((pixels[:, :1] - 0.5) / 0.5, size=8, mode="bilinear").mean(), atol=1e-5
    )
