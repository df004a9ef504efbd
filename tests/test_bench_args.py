"""The accuracy benchmark's --set option, which names every variant tried in BENCHMARKS.md."""

from __future__ import annotations

import pytest

from bench.accuracy import parse_overrides


def test_set_values_are_json_where_they_can_be_else_text():
    got = parse_overrides(["ema=0", "augment=flipshift", "lr=2e-3", "tta=false", "label_smoothing = 0.1"])
    assert got == {"ema": 0, "augment": "flipshift", "lr": 0.002, "tta": False, "label_smoothing": 0.1}


@pytest.mark.parametrize("bad", ["ema", "=3", ""])
def test_set_without_a_field_says_how_to_write_it(bad):
    with pytest.raises(SystemExit, match="--set takes FIELD=VALUE, e.g. --set ema=0"):
        parse_overrides([bad])
