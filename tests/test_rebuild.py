"""A checkpoint is rebuilt with the architecture it was trained with, offline: a ResNet
started from ImageNet weights keeps the ImageNet stem at 28 px, and rebuilding it fetches
nothing."""

from __future__ import annotations

import pytest
import torch

from core.errors import StudioError
from core.inference import rebuild_model
from core.models import create_model
from core.models.weights import architecture_only


def test_architecture_only_builds_the_pretrained_stem_without_weights():
    with pytest.raises(StudioError, match="could not be downloaded|could not be read"):
        create_model("resnet18", 1, 3, 28, pretrained=True)  # no network here, no cached file
    with architecture_only():
        net = create_model("resnet18", 1, 3, 28, pretrained=True)
    stems = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert stems[0].kernel_size == (7, 7)  # ImageNet stem kept
    scratch = create_model("resnet18", 1, 3, 28)
    assert [m for m in scratch.modules() if isinstance(m, torch.nn.Conv2d)][0].kernel_size == (3, 3)


@pytest.mark.parametrize("pretrained", [False, True])
def test_rebuild_model_loads_its_own_state_dict(pretrained):
    with architecture_only():
        trained = create_model("resnet18", 3, 4, 28, pretrained=pretrained).eval()
    ckpt = {"model_name": "resnet18", "state_dict": trained.state_dict(),
            "model_args": {"in_channels": 3, "num_classes": 4, "image_size": 28, "pretrained": pretrained}}
    again = rebuild_model(ckpt)
    again.load_state_dict(ckpt["state_dict"])  # strict: the same architecture
    x = torch.randn(2, 3, 28, 28)
    assert torch.allclose(again.eval()(x), trained(x), atol=1e-5)


def test_old_checkpoints_without_the_flag_read_it_from_the_config():
    with architecture_only():
        trained = create_model("resnet18", 1, 2, 28, pretrained=True)
    ckpt = {"model_name": "resnet18", "state_dict": trained.state_dict(), "config": {"pretrained": True},
            "model_args": {"in_channels": 1, "num_classes": 2, "image_size": 28}}
    rebuild_model(ckpt).load_state_dict(ckpt["state_dict"])
