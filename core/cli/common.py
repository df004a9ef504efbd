"""What every command of ``python -m core`` shares: the parser's one-line errors, the
``--runs-dir``/``--data-dir`` flags, number arguments, the run store, table printing, and
the closing line of a run.

Nothing here imports torch: the parser is built for every command.
"""

from __future__ import annotations

import argparse
from typing import Any


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        # prog is "python -m core" for the top level, "python -m core train" for a command.
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number (its sign is checked where it is used)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    return v


def number(text: str) -> float:
    """An argparse type: any number."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None


def add_dirs(sp: argparse.ArgumentParser, data: bool = True) -> None:
    """Add ``--runs-dir`` (and, with ``data``, ``--data-dir``) to a subcommand."""
    sp.add_argument("--runs-dir", help="where runs are kept (default $STUDIO_RUNS_DIR or ./runs)")
    if data:
        sp.add_argument("--data-dir", help="where MedMNIST files are kept (default $STUDIO_DATA_DIR or ~/.medmnist)")


def open_store(args):
    """The run store of ``--runs-dir`` (default ``$STUDIO_RUNS_DIR`` or ``./runs``)."""
    from core.runs import RunStore

    return RunStore(getattr(args, "runs_dir", None))


def fmt(v: Any) -> str:
    """A table cell: ``-`` for nothing, four decimals for a number, ``n/a`` for NaN."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v == v else "n/a"
    return str(v)


#: Longest cell printed in a table; longer text ends with "...".
MAX_CELL = 70


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` (dicts with the same keys) as a left-aligned plain-text table.

    Cells longer than :data:`MAX_CELL` are cut and end with "...".
    """
    if not rows:
        return
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(rows[0])).astype(str)
    frame = frame.map(lambda s: s if len(s) <= MAX_CELL else s[:MAX_CELL - 3] + "...")
    width = {c: max(len(c), int(frame[c].str.len().max())) for c in frame.columns}
    left = {c: (lambda n: lambda s: s.ljust(n))(width[c]) for c in frame.columns}
    text = frame.to_string(index=False, justify="left", formatters=left)
    print("\n".join(line.rstrip() for line in text.splitlines()))


def report_end(run) -> int:
    """Print how a run ended (its test scores when it completed); 0 for completed or cancelled."""
    meta = run.meta()
    status = meta.get("status")
    if status != "completed":
        print(f"run {run.id} ended {status}: {meta.get('error') or meta.get('stop_reason') or ''}".rstrip(": "))
        return 0 if status == "cancelled" else 1
    ev = run.eval() or {}
    test = ev.get("test", {})
    print(f"run {run.id} completed in {meta.get('train_seconds', 0):.1f} s "
          f"(best epoch {meta.get('best_epoch')}): test ACC {test.get('acc', float('nan')):.4f}, "
          f"AUC {test.get('auc', float('nan')):.4f}")
    return 0
