"""RELIABILITY.md names a test for every input and fault; each named test must exist, so the
table cannot drift from the suite when tests are renamed."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_test_named_in_reliability_md_exists():
    text = (REPO / "RELIABILITY.md").read_text()
    named, missing = 0, []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        current = None
        for m in re.finditer(r"`([\w./]*?)::(\w+)`", line):
            file, test = m.groups()
            current = file or current  # "`::name`" continues the file named before it
            assert current, f"a test is named without its file: {line}"
            named += 1
            if not re.search(rf"^def {test}\(", (REPO / "tests" / current).read_text(), re.M):
                missing.append(f"{current}::{test}")
    assert named >= 60, f"only {named} tests named"
    assert not missing, missing
