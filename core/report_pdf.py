"""A :class:`core.report.Report` as a PDF, with fpdf2 (pure Python, no system libraries).

Text is set in DejaVu Sans, the TrueType font matplotlib ships, so names in any European,
Greek or Cyrillic script come out as typed; PDF text is drawn as glyphs, never interpreted,
so a name such as ``<b>`` is just those characters.
"""

from __future__ import annotations

import io
from pathlib import Path

_FONT = "DejaVu"
_TEAL = (15, 118, 110)
_GREY = (107, 114, 128)


def _font_files() -> tuple[Path, Path] | None:
    try:
        import matplotlib
    except ImportError:
        return None
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
    return (regular, bold) if regular.is_file() and bold.is_file() else None


def render_pdf(report) -> bytes:
    """The report as PDF bytes (A4, portrait).

    Args:
        report: a :class:`core.report.Report`.

    Returns:
        The file's bytes (they start with ``%PDF``).
    """
    from fpdf import FPDF

    from core.report_blocks import Gallery, Heading, Paragraph, Picture, Table

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_title(report.title)
    pdf.set_creator("Medical Image Classification Studio")
    fonts = _font_files()
    if fonts:
        pdf.add_font(_FONT, "", str(fonts[0]))
        pdf.add_font(_FONT, "B", str(fonts[1]))
        family, clean = _FONT, str
    else:  # the core font covers Latin-1 only: anything else becomes "?"
        family, clean = "Helvetica", _latin1
    pdf.add_page()
    pdf.set_text_color(*_TEAL)
    pdf.set_font(family, "B", 18)
    pdf.multi_cell(0, 9, clean(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*_GREY)
    pdf.set_font(family, "", 9)
    pdf.multi_cell(0, 5, clean(report.subtitle), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    for i, block in enumerate(report.blocks):
        if isinstance(block, Heading):
            size = {2: 14, 3: 11.5}.get(block.level, 10)
            after = report.blocks[i + 1] if i + 1 < len(report.blocks) else None
            # Keep a heading with what follows it: a picture whole, anything else its first lines.
            room = 12 + (_picture_height(after.png, pdf.epw * _share(after.width)) if isinstance(after, Picture) else 18)
            if pdf.get_y() + room > pdf.page_break_trigger:
                pdf.add_page()
            pdf.ln(3 if block.level > 2 else 5)
            pdf.set_font(family, "B", size)
            pdf.set_text_color(*(_TEAL if block.level == 2 else (17, 24, 39)))
            pdf.multi_cell(0, size * 0.5, clean(block.text), new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0, 0, 0)
            pdf.ln(1)
        elif isinstance(block, Paragraph):
            grey = block.tone == "note"
            pdf.set_font(family, "B" if block.tone == "warning" else "", 8.5 if grey else 9.5)
            pdf.set_text_color(*(_GREY if grey else (0, 0, 0)))
            pdf.multi_cell(0, 4.6, clean(block.text), new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0, 0, 0)
            pdf.ln(1)
        elif isinstance(block, Table):
            _table(pdf, block, family, clean)
        elif isinstance(block, Picture):
            _picture(pdf, block.png, pdf.epw * _share(block.width))
            if block.caption:
                _caption(pdf, block.caption, family, clean)
        elif isinstance(block, Gallery):
            _gallery(pdf, block.items, family, clean)
            if block.caption:
                _caption(pdf, block.caption, family, clean)
    return bytes(pdf.output())


def _table(pdf, table, family: str, clean) -> None:
    from fpdf.fonts import FontFace

    from core.report_blocks import cell_text

    pdf.set_font(family, "", 8 if len(table.headers) > 5 else 9)
    widths = table.widths or ((1, 2) if len(table.headers) == 2 else None)
    with pdf.table(col_widths=widths, line_height=4.6, headings_style=FontFace(emphasis="BOLD",
                                                                              fill_color=(240, 253, 250)),
                   first_row_as_headings=True, text_align="LEFT") as t:
        head = t.row()
        for h in table.headers:
            head.cell(clean(h))
        for values in table.rows:
            row = t.row()
            for v in values:
                numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
                row.cell(clean(cell_text(v)), align="R" if numeric else "L")
    if table.caption:
        _caption(pdf, table.caption, family, clean)
    pdf.ln(1)


def _size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        return img.size


def _share(width: float) -> float:
    return max(0.1, min(float(width), 1.0))


def _picture_height(png: bytes, width: float) -> float:
    w, h = _size(png)
    return width * h / w


def _picture(pdf, png: bytes, width: float) -> None:
    height = _picture_height(png, width)
    if pdf.get_y() + height > pdf.page_break_trigger:
        pdf.add_page()
    pdf.image(io.BytesIO(png), x=pdf.l_margin, y=pdf.get_y(), w=width)
    pdf.set_y(pdf.get_y() + height + 1)


def _gallery(pdf, items, family: str, clean) -> None:
    gap = 6
    col = (pdf.epw - gap) / 2
    for start in range(0, len(items), 2):
        pair = items[start:start + 2]
        heights = [col * h / w for w, h in (_size(png) for png, _ in pair)]
        if pdf.get_y() + max(heights) + 12 > pdf.page_break_trigger:
            pdf.add_page()
        top, bottom = pdf.get_y(), pdf.get_y()
        pdf.set_font(family, "", 7.5)
        pdf.set_text_color(*_GREY)
        for j, ((png, caption), height) in enumerate(zip(pair, heights)):
            x = pdf.l_margin + j * (col + gap)
            pdf.image(io.BytesIO(png), x=x, y=top, w=col)
            pdf.set_xy(x, top + height + 1)
            pdf.multi_cell(col, 3.6, clean(caption), new_x="LEFT", new_y="NEXT")
            bottom = max(bottom, pdf.get_y())
        pdf.set_text_color(0, 0, 0)
        pdf.set_xy(pdf.l_margin, bottom + 3)


def _caption(pdf, text: str, family: str, clean) -> None:
    pdf.set_font(family, "", 7.5)
    pdf.set_text_color(*_GREY)
    pdf.multi_cell(0, 3.8, clean(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(1)


def _latin1(text: str) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")
