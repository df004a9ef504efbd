"""Moved to :mod:`core.checkpoint` (the checkpoint format, loader and check live together);
this name stays only until every importer says ``from core.checkpoint import ...``."""

from core.checkpoint import MODEL_ARGS, REQUIRED, check_model_checkpoint, checkpoint_problems  # noqa: F401
