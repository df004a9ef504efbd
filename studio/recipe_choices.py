"""What the recipe chooses for this dataset and this machine, said on the Train page: the batch
size the default recipe derives from the data (``core.train.batch_plan``) and the precision
``auto`` trains in (``core.train.device.training_precision``)."""

from __future__ import annotations

import streamlit as st

TURNS_CAPTION = ("Before training, a quick check on the training images decides whether they have an up and a "
                 "down; when they have none (cells, tissue), the model also sees them turned and upside down. "
                 "The run's details say what the check found.")


def batch_caption(settings, n_train: int | None) -> int:
    """Say which batch the recipe chose when it leaves the batch to the data.

    Args:
        settings: the form's ``TrainConfig``.
        n_train: training images of the chosen dataset, when known.

    Returns:
        The batch size the run will use (the recipe's own when it fixes one; 0 when unknown).
    """
    batch = settings.batch_size
    if batch == 0 and n_train:
        from core.train.batch_plan import plan_batch

        plan = plan_batch(n_train, settings.epochs, settings.max_minutes)
        batch = plan.batch_size
        st.caption(f"Batch size chosen by the recipe: {plan.batch_size} ({plan.reason[0].lower()}{plan.reason[1:]})",
                   help="The default recipe picks smaller batches for small datasets and short runs, so the model "
                        "takes enough learning steps; set a batch size under Advanced settings to choose it yourself.")
    return batch


def precision_caption(settings) -> None:
    """Say when training will compute in bf16 or fp16 (what ``auto`` means where it is native)."""
    from core.train.device import planned_precision

    planned = planned_precision(settings.device, settings.precision)
    if planned is None:
        return  # the settings' own check says what is wrong when the run is started
    device, precision = planned
    if precision != "fp32":
        where = "GPU" if device.type == "cuda" else "processor"
        st.caption(f"Computes in {precision} (mixed precision): this {where} does it natively, so it trains "
                   "faster with the same accuracy.",
                   help="Set with the precision setting (auto); `python -m core train --precision fp32` trains "
                        "in full precision instead. The speed and accuracy measured are in the project's benchmarks.")
