"""ImageNet weights for the baselines: the offline error and the loading itself.

The success path never downloads: torchvision's ``WeightsEnum.get_state_dict`` (and, for
Xception, ``torch.hub.load_state_dict_from_url``) is patched to hand over the state dict
of a freshly built RGB ImageNet network, which the test then compares with the result.
"""

from __future__ import annotations

import socket
import urllib.error

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._api import WeightsEnum

from core.errors import StudioError
from core.models import IMAGENET_MEAN, IMAGENET_STD, create_model

FILES = {  # the file each baseline's ImageNet weights live in
    "resnet18": "resnet18-f37072fd.pth",
    "resnet50": "resnet50-11ad3fa6.pth",
    "vgg16": "vgg16-397923af.pth",
    "densenet121": "densenet121-a639ec97.pth",
    "mobilenet_v2": "mobilenet_v2-7ebf99e0.pth",
    "inception_v3": "inception_v3_google-0cc3c7bd.pth",
    "xception": "xception-43020ad28.pth",
}


def _source(name: str) -> nn.Module:
    """A randomly initialised RGB, 1000-class network shaped like the real ImageNet checkpoint."""
    tvm = torchvision.models
    if name == "xception":
        import timm

        return timm.create_model("legacy_xception", num_classes=1000)
    if name == "inception_v3":  # the real file carries the auxiliary head too
        return tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    return getattr(tvm, name)(weights=None)


# (first conv in the checkpoint, final layer in the model, one deep layer to compare)
LAYOUT = {
    "resnet18": ("conv1.weight", "fc", "layer4.1.conv2.weight"),
    "resnet50": ("conv1.weight", "fc", "layer4.2.conv3.weight"),
    "vgg16": ("features.0.weight", "classifier.6", "features.28.weight"),
    "densenet121": ("features.conv0.weight", "classifier", "features.denseblock4.denselayer16.conv2.weight"),
    "mobilenet_v2": ("features.0.0.weight", "classifier.1", "features.18.0.weight"),
    "inception_v3": ("Conv2d_1a_3x3.conv.weight", "fc", "Mixed_7c.branch_pool.conv.weight"),
    "xception": ("conv1.weight", "fc", "conv4.pointwise.weight"),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread (restored after): beside other busy test processes on few
    cores, two OpenMP threads ran these networks several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def hub_dir(tmp_path):
    """An empty torch.hub folder, so a weights file cached on this machine cannot leak in."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def _offline() -> bool:
    try:
        socket.getaddrinfo("download.pytorch.org", 443)
        socket.getaddrinfo("github.com", 443)
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _offline(), reason="the network is reachable; the simulated offline test covers this path")
@pytest.mark.parametrize("name", ["resnet18", "xception"])
def test_really_offline_names_file_and_folder(name, hub_dir):
    with pytest.raises(StudioError) as err:
        create_model(name, 1, 2, 64, pretrained=True)
    message = str(err.value)
    assert FILES[name] in message
    assert str(hub_dir / "checkpoints") in message
    assert "without pretrained weights" in message
    assert not (hub_dir / "checkpoints" / FILES[name]).exists()


@pytest.mark.parametrize("name", sorted(FILES))
def test_simulated_offline_names_file_and_folder(name, hub_dir, monkeypatch):
    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(StudioError) as err:
        create_model(name, 1, 2, 28, pretrained=True)
    message = str(err.value)
    assert f"{FILES[name]} for {name} is not in {hub_dir / 'checkpoints'}" in message
    assert "Name or service not known" in message
    assert "train without pretrained weights" in message


def test_damaged_file_is_reported_not_trained_on(hub_dir):
    target = hub_dir / "checkpoints" / FILES["resnet18"]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a checkpoint")
    with pytest.raises(StudioError) as err:
        create_model("resnet18", 3, 2, 64, pretrained=True)
    assert str(target) in str(err.value) and "could not be read" in str(err.value)


def test_file_for_another_network_is_reported(hub_dir, monkeypatch):
    resnet50_state = torchvision.models.resnet50(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: resnet50_state)
    with pytest.raises(StudioError, match="does not fit the network"):
        create_model("resnet18", 3, 2, 64, pretrained=True)


def _patch_weights(monkeypatch, name: str, state: dict) -> None:
    if name == "xception":
        monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, *a, **k: state)
    else:
        monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: state)


@pytest.mark.parametrize("name", sorted(FILES))
def test_pretrained_grayscale_loads_imagenet_weights(name, monkeypatch, hub_dir):
    torch.manual_seed(0)
    source = _source(name).state_dict()
    first, head, deep = LAYOUT[name]
    given = source
    if name == "densenet121":  # the real file uses torchvision's old key names
        given = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in source.items()}
        assert given != source
    _patch_weights(monkeypatch, name, given)

    model = create_model(name, 1, 5, 28, pretrained=True)
    net = model.net
    state = net.state_dict()
    # grayscale first convolution: the ImageNet RGB filters summed over the colour axis
    assert state[first].shape[1] == 1
    assert torch.allclose(state[first], source[first].sum(dim=1, keepdim=True))
    assert torch.equal(state[deep], source[deep])
    # a fresh classifier with five outputs
    final = net.get_submodule(head)
    assert isinstance(final, nn.Linear) and final.out_features == 5
    # everything but the classifier came from the file
    for key, value in state.items():
        if not key.startswith(head + ".") and key != first and key in source:
            assert torch.equal(value, source[key]), key
    # a 28 px ResNet with ImageNet weights keeps the stem those weights were learned for
    if name.startswith("resnet"):
        assert net.conv1.kernel_size == (7, 7)
    # InceptionV3's and Xception's weights expect [-1, 1]: ImageNet-normalised gray -> that
    pixels = torch.rand(1, 1, 1, 1)
    x = (pixels - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    expected = (pixels - 0.5) / 0.5 if name in ("inception_v3", "xception") else x
    assert torch.allclose(x * model.input_scale + model.input_shift, expected, atol=1e-6)
    # and it runs
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


def test_pretrained_rgb_keeps_the_filters(monkeypatch, hub_dir):
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None).state_dict()
    _patch_weights(monkeypatch, "resnet18", source)
    model = create_model("resnet18", 3, 4, 64, pretrained=True)
    assert torch.equal(model.net.conv1.weight, source["conv1.weight"])
    assert model.net.fc.out_features == 4
    assert not torch.equal(model.net.fc.weight[:4], source["fc.weight"][:4])
