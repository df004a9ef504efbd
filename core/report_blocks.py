"""The plain blocks a report is made of, which :mod:`core.report_html` and
:mod:`core.report_pdf` both render: headings, paragraphs, tables, pictures and galleries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    tone: str = "plain"  # "plain", "note" (small print) or "warning"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]  # raw values; renderers format them with cell_text
    caption: str = ""
    widths: tuple[float, ...] | None = None  # relative column widths (PDF); None: even


@dataclass
class Picture:
    png: bytes
    caption: str = ""
    width: float = 1.0  # share of the page width


@dataclass
class Gallery:
    items: list[tuple[bytes, str]]  # (png, caption)
    caption: str = ""


@dataclass
class Report:
    """What a report says, before it is rendered.

    Attributes:
        title: the report's title.
        subtitle: what it covers and when it was made.
        blocks: headings, paragraphs, tables and pictures, in reading order.
    """

    title: str
    subtitle: str
    blocks: list = field(default_factory=list)


def cell_text(value: Any) -> str:
    """How a table value is written: 3 decimals for rates, thousands separators for counts,
    ``n/a`` for an undefined rate."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
