"""Is a loaded checkpoint one the studio can rebuild a model from?

:func:`core.runs.store.load_checkpoint_file` makes sure a ``.pt`` file is data (a dict of
tensors and plain values). A dict is not yet a model: a hand-made or truncated-by-hand
``best.pt`` may lack ``model_args`` or carry a list where the class names should be, and
the code that rebuilds the network would fail deep inside with ``KeyError: 'model_args'``.
:func:`check_model_checkpoint` names what is wrong, in one sentence, before any of that.
"""

from __future__ import annotations

from typing import Any, Mapping

from core.errors import StudioError

#: What every checkpoint written by ``core.train.run`` holds, and the type of each.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model_name": str,
    "model_args": dict,
    "state_dict": dict,
    "class_names": (list, tuple),
    "task": str,
    "mean": (list, tuple),
    "std": (list, tuple),
}
MODEL_ARGS = ("in_channels", "num_classes", "image_size")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def _numbers(values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def checkpoint_problems(ckpt: Mapping[str, Any]) -> list[str]:
    """What keeps ``ckpt`` from rebuilding a model, as short phrases (empty when nothing).

    Args:
        ckpt: a checkpoint dict as loaded from disk.

    Returns:
        Phrases such as ``"it has no 'model_args'"``; empty for a usable checkpoint.
    """
    import torch

    missing = [key for key in REQUIRED if key not in ckpt]
    if missing:
        return [f"it has no {', '.join(repr(k) for k in missing)}"]
    problems = [f"its {key!r} is a {type(ckpt[key]).__name__}" for key, kind in REQUIRED.items()
                if not isinstance(ckpt[key], kind)]
    if problems:
        return problems
    args = ckpt["model_args"]
    bad_args = [key for key in MODEL_ARGS if not _whole(args.get(key))]
    if bad_args:
        problems.append(f"its model_args lack a whole number for {', '.join(repr(k) for k in bad_args)}")
    else:
        if len(ckpt["class_names"]) != args["num_classes"]:
            problems.append(f"it names {len(ckpt['class_names'])} classes for a model of {args['num_classes']}")
        for key in ("mean", "std"):
            if len(ckpt[key]) < args["in_channels"] or not _numbers(ckpt[key]):
                problems.append(f"its {key!r} is not one number per input channel")
    if not all(isinstance(c, str) for c in ckpt["class_names"]):
        problems.append("its class names are not all text")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["state_dict"].items()):
        problems.append("its weights (state_dict) are not all named tensors")
    return problems


def check_model_checkpoint(ckpt: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """Refuse a checkpoint that cannot rebuild its model, saying why.

    Args:
        ckpt: the loaded checkpoint dict.
        what: how to name it in the message, e.g. ``"the best checkpoint of run 'r1'"``.

    Returns:
        ``ckpt``, unchanged, when it is usable.

    Raises:
        StudioError: "<what> is a damaged checkpoint: <why>; ..." for anything else.
    """
    problems = checkpoint_problems(ckpt)
    if problems:
        raise StudioError(
            f"{what} is a damaged checkpoint: {'; '.join(problems)}; "
            "train or resume the run again to write a new one, or pick another run"
        )
    return ckpt
