"""Training: settings, recipes, the device-aware trainer and the run entry point."""

from core.train.config import TrainConfig, validate
from core.train.device import describe_device, pick_device
from core.train.recipes import RECIPES, get_recipe, list_recipes, make_config, paper_recipe_for
from core.train.run import build_params, run_training

__all__ = ["TrainConfig", "validate", "pick_device", "describe_device", "RECIPES", "get_recipe",
           "list_recipes", "make_config", "paper_recipe_for", "build_params", "run_training"]
