"""Reading a run's JSON files defensively: one hand-edited or hostile file must never break
a listing, a page or a command that only wanted the other runs.

``json.loads`` accepts things the rest of the studio cannot hold: integers of any length
(SQLite stores 64 bits, a float tops out near 1.8e308), float literals that overflow to
infinity, and nesting deep enough to exhaust the interpreter's stack (on parsing, or later
when a page renders or re-writes the value). :func:`loads_checked` refuses all three with
a :class:`DamagedJSON` whose text says what was found, so the caller can report the file
as damaged and carry on with the next one.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

#: Deeper than any file the studio writes (about 5 levels), far below the stack limit.
MAX_DEPTH = 64
#: SQLite's INTEGER is a signed 64-bit number; the index stores such fields as integers.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# Fields of metrics.jsonl records that count something and must be whole numbers.
_COUNTERS = ("epoch", "step", "batch", "steps_per_epoch")
# Fields the charts plot: numbers or null.
_PLOTTED = ("loss", "lr", "train_loss", "val_loss", "val_acc", "val_auc", "time", "epoch_seconds",
            "train_seconds")
# Integers beyond this lose their value as floats (charts); epoch and step never get there.
_PLOTTABLE = 2**53


class DamagedJSON(ValueError):
    """Valid JSON the studio cannot hold; the text completes "the file holds ..."."""


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def _parse_int(text: str) -> int:
    # Check the length first: a 5,000-digit literal would cost time (and hit Python's own
    # digit limit) before it could be refused.
    if len(text.lstrip("-")) > 19 or not _INT_MIN <= int(text) <= _INT_MAX:
        raise DamagedJSON(f"the number {_short(text)}, too large to store (the limit is 2**63)")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # a literal such as 1e400; the words Infinity / NaN are kept
        raise DamagedJSON(f"the number {_short(text)}, too large for a floating-point number")
    return value


def loads_checked(text: str | bytes) -> Any:
    """``json.loads`` that refuses numbers too large to store and nesting too deep to use.

    Args:
        text: the file's content.

    Returns:
        The parsed value.

    Raises:
        DamagedJSON: an integer outside 64 bits, a float literal that overflows, or
            nesting deeper than :data:`MAX_DEPTH`.
        ValueError: text that is not JSON at all (``json.JSONDecodeError``).
    """
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise DamagedJSON(f"values nested more than {MAX_DEPTH} levels deep") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise DamagedJSON(f"values nested more than {MAX_DEPTH} levels deep")
    return value


def nesting_depth(value: Any) -> int:
    """How many lists / dicts deep ``value`` goes (0 for a number or a string), without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth  # deep enough to refuse; no need to walk the rest
        todo.extend((child, depth + 1) for child in children)
    return deepest


def metric_record_problem(record: Mapping[str, Any]) -> str | None:
    """Why a metrics.jsonl record cannot be plotted or counted, or None when it can.

    Args:
        record: one parsed line, e.g. ``{"kind": "epoch", "epoch": 3, "val_loss": 0.41}``.

    Returns:
        A phrase such as ``"'epoch' is 'two', not a whole number"``, or None.
    """
    for key in _COUNTERS:
        if key in record:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _PLOTTABLE:
                return f"{key!r} is {_short(repr(value))}, not a whole number"
    for key in _PLOTTED:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key!r} is {_short(repr(value))}, not a number"
        if isinstance(value, int) and abs(value) > _PLOTTABLE:
            return f"{key!r} is {_short(repr(value))}, too large to plot"
    return None
