"""Showing what visitors typed or uploaded as text, never as markup.

Run, class, dataset, tag and file names come from visitors, and in the hosted demo every
visitor sees every run: a class folder named ``[Session expired - sign in again](https:evil.example)``
must not become a live link on someone else's page. Two places turn text into markup:

- Streamlit's Markdown: ``st.markdown``, ``st.write`` of a string, ``st.caption``,
  ``st.success``/``error``/``warning``/``info``, ``st.toast``, every widget label
  (buttons, checkboxes, text inputs, metric labels, expander and tab titles) and the
  options of ``st.radio``. Use :func:`md_escape` for the user's part of such a string.
  (The options of ``st.selectbox`` and ``st.multiselect`` and the cells and headers of
  ``st.dataframe`` are shown as plain text; escaping them would show the backslashes.)
- Plotly's pseudo-HTML: trace names (legends), axis tick labels, titles and hover text
  understand ``<a href>``, ``<b>``, ``<br>``. Use :func:`html_escape` (the chart builders in
  :mod:`studio.charts` do it for every label they are given).
"""

from __future__ import annotations

import html
import re
from typing import Any

# Characters that start Markdown inline markup anywhere in a line: code, emphasis, links and
# images, raw HTML and autolinks, strikethrough, maths, table cells, e-mail autolinks, and the
# backslash itself. Each is ASCII punctuation, so a backslash before it shows it as is.
_ALWAYS = set("\\`*[]<>~$|@")
# Block markup that only counts at the start of a line (headings, quotes, lists, rules).
_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d{1,9}[.)](?=\s|$))")
# Autolink literals of GitHub-flavoured Markdown: "https://x", "ftp://x" and "www.x".
_SCHEME = re.compile(r":(?=//)")
_WWW = re.compile(r"(?i)(?<![A-Za-z0-9])(www)\.")


def md_escape(value: Any) -> str:
    """Text that Streamlit's Markdown shows exactly as written, with no links, HTML or formatting.

    Line breaks and tabs become spaces (a new line could start a heading, a list or a
    table). An underscore inside a word is left alone (Markdown never reads it as emphasis),
    so ``bloodmnist_64.npz`` stays readable in the page's source and in tests.

    Args:
        value: a name or message; ``None`` becomes ``""``, anything else ``str(value)``.

    Returns:
        The escaped text, to put inside a Markdown string.
    """
    text = "" if value is None else str(value)
    text = re.sub(r"[\r\n\t\f\v\u2028\u2029]+", " ", text)
    out = []
    for i, ch in enumerate(text):
        if ch in _ALWAYS:
            out.append("\\" + ch)
        elif ch == "_" and not (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()):
            out.append("\\_")
        else:
            out.append(ch)
    text = "".join(out)
    text = _SCHEME.sub(r"\\:", text)
    text = _WWW.sub(r"\1\\.", text)
    match = _LINE_START.match(text)
    if match:
        start = match.end(1)
        marker = match.group(2)
        # "12." -> "12\." ; "#" -> "\#"
        escaped = marker[:-1] + "\\" + marker[-1] if len(marker) > 1 else "\\" + marker
        text = text[:start] + escaped + text[match.end(2):]
    return text


def html_escape(value: Any) -> str:
    """Text that Plotly shows as written in a legend, axis label, title or hover box.

    Plotly reads ``<a href>``, ``<b>``, ``<br>`` and HTML entities in its labels, and
    turns ``&lt;``, ``&gt;`` and ``&amp;`` back into the characters, so escaping ``&``,
    ``<`` and ``>`` shows the text unchanged and runs none of it.

    Args:
        value: a name; ``None`` becomes ``""``.

    Returns:
        The escaped text.
    """
    return html.escape("" if value is None else str(value), quote=False)
