"""How the pages write numbers, times and run states: ``3 min 20 s``, ``54.2 k``, ``0.874``,
``23 Nov 20:06``, "Completed", and core's messages as sentences. Pure functions, no streamlit (``studio.ui`` re-exports them
under the names the pages use)."""

from __future__ import annotations

import math
import re
from typing import Any

STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "interrupted": "Interrupted",
    "unknown": "Unknown",
}
# Material icons (Streamlit ships the font, so they show in every browser) for markdown.
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "completed": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/warning:",
    "unknown": ":material/help:",
}


def fmt_duration(seconds: float | None) -> str:
    """``under 1 s``, ``45 s``, ``3 min 20 s``, ``1 h 5 min``; ``-`` when unknown."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    if seconds < 0.5:
        return "under 1 s"
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_estimate(seconds: float | None) -> str:
    """An estimate in words: ``about 45 s``, ``under 1 s``, ``-`` when unknown."""
    text = fmt_duration(seconds)
    return text if text in ("-", "under 1 s") else f"about {text}"


def fmt_count(n: int | float | None) -> str:
    """``532``, ``54.2 k``, ``11.2 M``."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e4:
        return f"{n / 1e3:.1f} k"
    return f"{int(n):,}"


def fmt_metric(value: Any, digits: int = 3) -> str:
    """A score such as ``0.874``; ``-`` when missing or undefined."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def status_label(status: str | None) -> str:
    """A run status in words ("Completed"); an unknown one as it is."""
    return STATUS_LABELS.get(status or "unknown", str(status))


def fmt_time(iso: Any) -> str:
    """``23 Nov 20:06`` (UTC, as the run store writes it) from an ISO time stamp."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).strftime("%d %b %H:%M")
    except ValueError:
        return ""


def plain(message: Any) -> str:
    """A message without Python object reprs (``<_io.BytesIO object at 0x...>``), which
    some decoders put into their errors and mean nothing to a person."""
    text = " ".join(str(message).split())
    text = re.sub(r"cannot identify image file <[^<>]*>", "unknown or damaged image format", text)
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", text)


def sentence(message: str) -> str:
    """A core message as a sentence: capital first letter (unless it starts with a file
    name or an id), full stop at the end."""
    text = plain(message)
    if not text:
        return "Something went wrong."
    first = text.split(" ", 1)[0]
    if first[:1].islower() and not re.search(r"[._/\\\d'-]", first):
        text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    return text
