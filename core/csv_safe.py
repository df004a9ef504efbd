"""CSV files that a spreadsheet opens as data, never as formulas.

File names, class names and run names come from visitors. A cell such as
``=HYPERLINK("https://evil.example","Click")`` or ``=2+2.png`` is a live formula in Excel,
LibreOffice and Google Sheets (CSV injection), so every CSV the studio writes (the
command line's ``predictions.csv``, the pages' downloads) goes through :func:`csv_cell`.
"""

from __future__ import annotations

import numbers
from typing import Any

#: What a spreadsheet reads as the start of a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula.

    A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a
    leading apostrophe (OWASP's advice). Numbers written by the studio are given as numbers
    (or as text the studio formatted), so they never start that way.

    Args:
        value: the cell's content.

    Returns:
        The text to write.
    """
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text


def guard_frame(frame):
    """A copy of a ``pandas.DataFrame`` whose text cells and column names are :func:`csv_cell`-guarded.

    Numbers (including negative ones) stay numbers: a spreadsheet reads ``-0.5`` as a value,
    not a formula; only text is guarded.

    Args:
        frame: the table to write.

    Returns:
        The guarded copy.
    """
    def cell(value: Any) -> Any:
        if isinstance(value, str):
            return csv_cell(value)
        if value is None or isinstance(value, (numbers.Number, bool)) or _is_missing(value):
            return value
        return csv_cell(value)  # a path or a list is written as its text: guard that text

    from pandas.api import types

    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        # Text lives in object, string ("str" in pandas 3) and category columns; numbers,
        # booleans and time stamps are written as values and need no guard.
        if not (types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype) or types.is_datetime64_any_dtype(dtype)):
            out[column] = out[column].astype(object).map(cell)
    out.columns = [csv_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out


def frame_to_csv_bytes(frame, index: bool = False) -> bytes:
    """A DataFrame as UTF-8 CSV bytes with every text cell guarded (for ``st.download_button``).

    Args:
        frame: the table.
        index: also write the index (guarded like a column).

    Returns:
        The CSV file's bytes.
    """
    guarded = guard_frame(frame.reset_index() if index else frame)
    return guarded.to_csv(index=False).encode("utf-8")


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: not one missing value
        return False
