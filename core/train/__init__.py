"""Training: settings (``config``), recipes, the device-aware trainer (``trainer``, with
``weight_average`` and ``callbacks``), the run entry point (``run``: training reports its
results, the job runner's worker records status and times), and a run's
final evaluation (``evaluation``: predict the splits, then evaluate).

Nothing here imports the run store or the job runner: runs call down into training, never the reverse.
"""

from core.train.config import TrainConfig, validate
from core.train.device import describe_device, pick_device
from core.train.recipes import RECIPES, get_recipe, list_recipes, make_config, paper_recipe_for
from core.train.run import build_params, run_training

__all__ = ["TrainConfig", "validate", "pick_device", "describe_device", "RECIPES", "get_recipe",
           "list_recipes", "make_config", "paper_recipe_for", "build_params", "run_training"]
