"""The checkpoint format: writing, loading and checking ``best.pt`` / ``last.pt``.

A checkpoint is a dict of tensors and plain values that holds everything needed to
rebuild its model (torchvision's reference style): ``model_name``, ``model_args``
(``in_channels``, ``num_classes``, ``image_size``), ``state_dict``, ``class_names``, ``task``,
``mean``/``std``, plus the epoch and optimiser state for resuming. It is written
atomically (:func:`save_checkpoint_file`), loaded with ``weights_only`` so it can never
run code (:func:`load_checkpoint_file`), and checked before a model is rebuilt from it
(:func:`check_model_checkpoint`), so a hand-made or damaged file is refused in one
sentence. A leaf: the trainer, the run store and inference all use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from core.atomic import atomic_write
from core.errors import StudioError


def save_checkpoint_file(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Save a checkpoint atomically (torch.save into a temp file, then rename).

    Args:
        path: where it goes (its folder is made if needed).
        obj: a dict of tensors and plain values (state dicts, epoch, model args,
            class names); anything else could not be loaded with ``weights_only``.

    Returns:
        The checkpoint's path.
    """
    import torch

    if not isinstance(obj, Mapping):
        raise TypeError(f"a checkpoint is a dict, not {type(obj).__name__}")
    return atomic_write(Path(path), lambda fh: torch.save(dict(obj), fh))


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file with ``torch.load(weights_only=True, map_location="cpu")``.

    Args:
        path: a ``.pt`` file written by :func:`save_checkpoint_file` (or uploaded).

    Returns:
        The checkpoint dict.

    Raises:
        StudioError: when the file is not a PyTorch file, carries pickled objects other
            than tensors and plain values (code that would run on load), or is not a dict.
    """
    import pickle

    import torch

    path = Path(path)
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise StudioError(
            f"{path.name} holds Python objects other than tensors and plain values, "
            "which could run code when loaded, so it was not opened; use a checkpoint the studio wrote"
        ) from exc
    except FileNotFoundError:
        raise StudioError(f"checkpoint {path} does not exist; check the path") from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged files
        raise StudioError(
            f"{path.name} cannot be read as a PyTorch checkpoint ({type(exc).__name__}); "
            "it may be truncated or another kind of file, so train again or use another checkpoint"
        ) from exc
    if not isinstance(obj, dict):
        raise StudioError(
            f"{path.name} holds a {type(obj).__name__}, not a studio checkpoint (a dict); "
            "use a checkpoint the studio wrote"
        )
    return obj


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
