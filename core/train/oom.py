"""Out of memory, in words: what ran out, and what to lower.

PyTorch reports memory exhaustion in several shapes: ``torch.cuda.OutOfMemoryError``
("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity; ...)"),
a ``RuntimeError`` from the CPU allocator ("[enforce fail at alloc_cpu.cpp:...]
DefaultCPUAllocator: can't allocate memory: you tried to allocate 411041792 bytes. Error
code 12 (Cannot allocate memory)"), the same for Apple's GPUs ("MPS backend out of
memory"), and Python's (or NumPy's) ``MemoryError``. None of that allocator text helps a
person; :func:`out_of_memory_message` turns it into one sentence naming the settings
that decide memory use: batch size, image size and model.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_GPU = re.compile(r"CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED|"
                  r"MPS backend out of memory|HIP out of memory", re.I)
_CPU = re.compile(r"DefaultCPUAllocator: can't allocate memory|Cannot allocate memory|"
                  r"not enough memory|Unable to allocate", re.I)


def out_of_memory_kind(exc: BaseException) -> str | None:
    """``"GPU"``, ``"CPU"`` (main memory) or None when ``exc`` is not memory exhaustion.

    Looks through the exception's causes too (a DataLoader or a wrapper may re-raise it).
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        text = str(cur)
        oom_type = type(cur).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError, without importing torch
        if oom_type or (isinstance(cur, RuntimeError) and _GPU.search(text)):
            return "GPU"
        if isinstance(cur, MemoryError) or (isinstance(cur, (RuntimeError, OSError)) and _CPU.search(text)):
            return "CPU"
        cur = cur.__cause__ or cur.__context__
    return None


def out_of_memory_message(exc: BaseException, config: Mapping[str, Any] | None = None,
                          doing: str = "training") -> str | None:
    """One sentence for a person when ``exc`` is memory exhaustion, else None.

    Args:
        exc: the exception that ended the work.
        config: the run's training settings (``batch_size``, ``image_size``, ``model``),
            to name the values to lower; None names them without values.
        doing: what ran out of memory, e.g. ``"training"`` or ``"evaluation"``.

    Returns:
        E.g. "training ran out of GPU memory (resnet50 at 224 px, batch size 512); start a
        new run with a smaller batch size (try 256), a smaller image size or a smaller
        model", or None when ``exc`` is something else.
    """
    kind = out_of_memory_kind(exc)
    if kind is None:
        return None
    where = "GPU memory" if kind == "GPU" else "memory (RAM)"
    config = config or {}
    batch, size, model = config.get("batch_size"), config.get("image_size"), config.get("model")
    facts = []
    if isinstance(model, str) and isinstance(size, int):
        facts.append(f"{model} at {size} px")
    if isinstance(batch, int) and not isinstance(batch, bool):
        facts.append(f"batch size {batch}")
    said = f" ({', '.join(facts)})" if facts else ""
    if doing != "training":
        return (f"{doing} ran out of {where}{said}; close other programs or training runs that use it "
                "and try again, or use a machine with more memory")
    try_batch = f" (try {batch // 2})" if isinstance(batch, int) and batch >= 2 else ""
    # The settings of a run never change (params.json), so the advice is a new run, not a resume.
    return (f"{doing} ran out of {where}{said}; start a new run with a smaller batch size{try_batch}, "
            "a smaller image size or a smaller model")
