"""A :class:`core.report.Report` as one self-contained HTML page.

Pictures are inlined as ``data:image/png;base64`` URLs and the style sheet sits in the page,
so the file opens anywhere, offline, and can be mailed as it is. Every text that came from a
person (run, class and dataset names, notes) goes through :func:`html.escape`: a run called
``<script>`` is shown as those characters and never runs.
"""

from __future__ import annotations

import base64
from html import escape

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827;
       max-width: 1000px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { color: #0f766e; margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #ccfbf1; padding-bottom: 0.2em; margin-top: 2em; }
.subtitle { color: #6b7280; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #e5e7eb; padding: 0.3em 0.6em; text-align: left; }
th { background: #f0fdfa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: #6b7280; font-size: 0.85em; padding-top: 0.3em; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; }
figcaption { color: #6b7280; font-size: 0.85em; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
.gallery figure { margin: 0; width: 340px; }
.note { color: #6b7280; font-size: 0.9em; }
.warning { background: #fef3c7; border-left: 4px solid #f59e0b; padding: 0.5em 0.8em; }
"""


def render_html(report) -> str:
    """The report as an HTML document.

    Args:
        report: a :class:`core.report.Report`.

    Returns:
        The page as a string (UTF-8 when written out).
    """
    from core.report_blocks import Gallery, Heading, Paragraph, Picture, Table

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{escape(report.title)}</title>", f"<style>{_STYLE}</style></head><body>",
             f"<h1>{escape(report.title)}</h1>", f'<p class="subtitle">{escape(report.subtitle)}</p>']
    for block in report.blocks:
        if isinstance(block, Heading):
            level = min(max(int(block.level), 2), 4)
            parts.append(f"<h{level}>{escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            cls = f' class="{block.tone}"' if block.tone in ("note", "warning") else ""
            parts.append(f"<p{cls}>{escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Picture):
            width = f"{max(0.1, min(block.width, 1.0)) * 100:.0f}%"
            parts.append(f'<figure><img src="{_data_url(block.png)}" alt="{escape(block.caption)}" '
                         f'style="width: {width}">'
                         + (f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else "")
                         + "</figure>")
        elif isinstance(block, Gallery):
            items = "".join(f'<figure><img src="{_data_url(png)}" alt="{escape(cap)}">'
                            f"<figcaption>{escape(cap)}</figcaption></figure>" for png, cap in block.items)
            parts.append(f'<div class="gallery">{items}</div>')
            if block.caption:
                parts.append(f'<p class="note">{escape(block.caption)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(table) -> str:
    from core.report_blocks import cell_text

    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = []
        for value in row:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            opening = '<td class="num">' if numeric else "<td>"
            cells.append(f"{opening}{escape(cell_text(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
