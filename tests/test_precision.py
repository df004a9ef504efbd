"""Training precision: bf16 autocast by default where the CPU (or GPU) computes bf16 natively,
fp32 elsewhere and whenever asked; evaluation and inference stay fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from core.models import create_model
from core.train import TrainConfig, build_params, make_config, validate
from core.train import device as device_mod
from core.train.device import amp_dtype, cpu_has_bf16, training_precision
from core.train.trainer import Trainer, make_batches
from tests.helpers_runs import square_images

CPU = torch.device("cpu")


def test_auto_trains_in_bf16_only_on_a_cpu_with_bf16_units(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    assert training_precision(CPU, "auto") == "fp32"
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert training_precision(CPU, "auto") == "bf16"
    assert training_precision(CPU, "fp32") == "fp32"  # asked for: always fp32
    assert training_precision(CPU, "bf16") == "bf16"
    assert training_precision(torch.device("mps"), "auto") == "fp32"


def test_evaluation_and_inference_stay_fp32_on_the_cpu(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert amp_dtype(CPU) is None
    assert amp_dtype(CPU, "auto") is None
    assert amp_dtype(CPU, "fp32") is None


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_params_json_records_what_auto_means_here(monkeypatch, native, expected):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: native)
    params = build_params(make_config("breastmnist", "medvcnn", "default", device="cpu"))
    assert params["precision"] == expected and params["config"]["precision"] == "auto"
    fixed = build_params(make_config("breastmnist", "medvcnn", "default", device="cpu", precision="fp32"))
    assert fixed["precision"] == "fp32"
    assert build_params(make_config("breastmnist", "logreg", "default", device="cpu"))["precision"] == "fp32"


def test_bf16_on_a_cpu_without_bf16_units_is_refused_with_what_to_choose(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="precision 'bf16' needs a GPU or CPU with native bf16 support.*choose precision 'auto'"):
        amp_dtype(CPU, "bf16")
    with pytest.raises(ConfigError, match="precision 'bf16' needs"):
        validate(TrainConfig(dataset="breastmnist", model="medvcnn", device="cpu", precision="bf16"))


def test_bf16_on_a_cpu_with_bf16_units_autocasts(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert amp_dtype(CPU, "bf16") is torch.bfloat16


def test_unknown_precision_lists_the_choices():
    with pytest.raises(ConfigError, match="precision 'fp16' is not offered; choose one of: auto, fp32, bf16"):
        validate(TrainConfig(dataset="breastmnist", model="medvcnn", precision="fp16"))


def _trainer(precision: str) -> Trainer:
    images, labels, _ = square_images(256, seed=3)
    train = make_batches(images[:192], labels[:192], (0.5,), (0.5,))
    val = make_batches(images[192:], labels[192:], (0.5,), (0.5,))
    cfg = TrainConfig(dataset="squares", model="medvcnn", epochs=4, batch_size=32, optimizer="adam", lr=3e-3,
                      log_every=1000, precision=precision, device="cpu")
    torch.manual_seed(0)
    return Trainer(create_model("medvcnn", 1, 2, 28), cfg, "binary", CPU, train, val)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 units (AMX / AVX-512 BF16)")
def test_bf16_training_on_the_cpu_learns_and_keeps_fp32_weights():
    trainer = _trainer("bf16")
    assert trainer.amp_dtype is torch.bfloat16
    first = trainer.train_one_epoch(1)["train_loss"]
    for epoch in (2, 3, 4):
        last = trainer.train_one_epoch(epoch)["train_loss"]
    assert last < first * 0.8
    assert trainer.validate()["val_acc"] > 0.8
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_a_trainer_left_on_auto_uses_what_the_cpu_offers(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    assert _trainer("auto").amp_dtype is None


def test_fp32_training_on_the_cpu_is_reproducible():
    losses = [[_t.train_one_epoch(e)["train_loss"] for e in (1, 2)] for _t in (_trainer("fp32"), _trainer("fp32"))]
    assert losses[0] == losses[1]
