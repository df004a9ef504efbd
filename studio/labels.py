"""Plain words for what the pages show: paper names, class names of ordinal grades, the
training queue in the sidebar. Pure functions, no streamlit."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

_SEED_NOTE = re.compile(r"\s*\(seed \d+\)|,?\s*\bseed \d{3}\b")


def paper_title(paper: Any) -> str:
    """A model's source without the studio's internal seed numbers:
    ``"MedvCNN (seed 000)"`` -> ``"MedvCNN"``; ``None`` -> ``""``."""
    if paper is None:
        return ""
    return re.sub(r"\s{2,}", " ", _SEED_NOTE.sub("", str(paper))).strip(" ,")


def class_label(name: Any, task: str | None) -> str:
    """A class as a person reads it: ordinal grades that MedMNIST names only by number
    (RetinaMNIST's "0" ... "4") read "grade 0" ...; a class with a name keeps it."""
    text = "" if name is None else str(name)
    if task and task.startswith("ordinal") and text.isdigit():
        return f"grade {text}"
    return text


def class_labels(names: Sequence[Any] | None, task: str | None) -> list[str]:
    """:func:`class_label` of every name."""
    return [class_label(n, task) for n in names or []]


def queue_counts(rows: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(running, waiting) among run rows; waiting counts the queued runs."""
    statuses = [r.get("status") for r in rows]
    return statuses.count("running"), statuses.count("queued")


def queue_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """``1 running, 2 waiting``; empty when nothing is queued or training."""
    running, waiting = queue_counts(rows)
    if not running and not waiting:
        return ""
    return f"{running} running, {waiting} waiting"


def readable_classes(lm: Any) -> Any:
    """A loaded model (:class:`core.inference.LoadedModel`) whose class names read as a
    person reads them (:func:`class_label`), for what the page shows; the model itself is
    shared, not copied. The same object when no name changes."""
    import dataclasses

    names = class_labels(lm.class_names, lm.task)
    return lm if names == list(lm.class_names) else dataclasses.replace(lm, class_names=names)
