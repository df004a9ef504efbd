"""Training settings: recipes resolve as the spec says and out-of-range values are refused."""

import pytest

from core.errors import ConfigError
from core.train import TrainConfig, list_recipes, make_config, paper_recipe_for, validate


def test_paper_recipes_follow_the_spec():
    c = make_config("breastmnist", "medvcnn", "paper")
    assert (c.optimizer, c.lr, c.momentum, c.batch_size) == ("sgd", 1e-3, 0.9, 128)
    a = make_config("breastmnist", "arn_cnn", "paper")
    assert (a.optimizer, a.batch_size, a.schedule, a.plateau_factor, a.early_stopping, a.dwell) == (
        "adamax", 40, "plateau", 0.5, 3, True)
    assert make_config("x", "arn_cnn_no_attention", "paper").recipe == "arn_cnn"
    s = make_config("x", "snet", "paper")
    assert (s.optimizer, s.epochs, s.weight_decay, s.augment) == ("adam", 30, 1e-3, "snet")
    q = make_config("x", "quadsnet", "paper")
    assert (q.loss, q.lr, q.batch_size, q.class_weights) == ("margin", 1e-4, 32, True)
    assert make_config("x", "resnet18", "paper").recipe == "default"
    assert paper_recipe_for("bloodcnn") == "bloodcnn"
    assert {"default", "medmnist", "medvcnn", "arn_cnn", "snet", "quadsnet"} <= set(list_recipes())


def test_overrides_win_and_none_is_ignored():
    c = make_config("breastmnist", "medvcnn", "default", epochs=3, lr=None, seed=7)
    assert c.epochs == 3 and c.seed == 7 and c.lr == make_config("b", "medvcnn").lr


def test_round_trip_through_dict():
    c = make_config("breastmnist", "medvcnn", "medmnist", epochs=4)
    assert TrainConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("change, message", [
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(epochs=10_000), "epochs must be at most"),
    (dict(lr=0.0), "learning rate must be a number above 0"),
    (dict(lr=-1.0), "learning rate must be a number above 0"),
    (dict(lr=float("nan")), "learning rate"),
    (dict(batch_size=-1), "batch size must be between 1"),
    (dict(image_size=32), "image size 32 is not offered"),
    (dict(optimizer="lion"), "optimizer 'lion' is not offered"),
    (dict(schedule="warp"), "schedule 'warp' is not offered"),
    (dict(monitor="val_f1"), "monitor 'val_f1' is not offered"),
    (dict(augment="wild"), "augmentation preset 'wild' is not offered"),
    (dict(label_smoothing=1.0), "label smoothing must be below 1"),
    (dict(weight_decay=-0.1), "weight decay must be zero or a positive number"),
])
def test_validate_refuses(change, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config("breastmnist", "medvcnn").replace(**change))


def test_validate_accepts_defaults_and_demo_cap():
    cfg = make_config("breastmnist", "medvcnn", epochs=20)
    assert validate(cfg) is cfg
    with pytest.raises(ConfigError, match="at most 10"):
        validate(cfg, max_epochs=10)


def test_split_seed_draws_the_split_and_defaults_to_the_seed():
    from core.errors import ConfigError
    from core.train.config import TrainConfig, validate

    assert TrainConfig(dataset="x", model="medvcnn", seed=3).data_seed == 3
    assert TrainConfig(dataset="x", model="medvcnn", seed=3, split_seed=0).data_seed == 0
    with pytest.raises(ConfigError, match="split seed must be a whole number"):
        validate(TrainConfig(dataset="x", model="medvcnn", split_seed="0"))
