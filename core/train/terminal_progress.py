"""What ``python -m core train`` prints while it trains.

In a terminal, a tqdm bar over all training steps. Anywhere else (stdout to a file, a
pipe, a CI log) a bar is a flood of carriage-return frames, so the same records become
one plain line per epoch on stdout instead.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, TextIO


def interactive(*streams: TextIO) -> bool:
    """True when every stream is a terminal (a stream without ``isatty`` is not)."""
    return all(getattr(s, "isatty", lambda: False)() for s in streams)


def _num(value: Any, fmt: str = ".3f") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "n/a"
    return format(value, fmt)


def epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    """One epoch record as a line, e.g. ``epoch 2/5: train loss 0.512, val loss 0.488, val ACC 0.790,
    val AUC 0.861, 3.2 s``.

    Args:
        record: a ``kind == "epoch"`` metrics record.
        epochs: the planned number of epochs.
    """
    parts = [f"train loss {_num(record.get('train_loss'))}", f"val loss {_num(record.get('val_loss'))}",
             f"val ACC {_num(record.get('val_acc'))}", f"val AUC {_num(record.get('val_auc'))}"]
    seconds = record.get("epoch_seconds")
    if isinstance(seconds, (int, float)):
        parts.append(f"{seconds:.1f} s")
    return f"epoch {record.get('epoch')}/{epochs}: " + ", ".join(parts)


class TrainingProgress:
    """Feeds on the trainer's step and epoch records (``run_training(progress=...)``).

    Args:
        epochs: the planned number of epochs.
        bar: draw a tqdm bar on ``bar_stream``; None decides by whether stdout and the bar's
            stream are both terminals.
        out: where epoch lines go when there is no bar (stdout by default).
        bar_stream: where the bar goes (stderr by default).
    """

    def __init__(self, epochs: int, bar: bool | None = None, out: TextIO | None = None,
                 bar_stream: TextIO | None = None):
        self.epochs = epochs
        self.out = out or sys.stdout
        self.bar_stream = bar_stream or sys.stderr
        self.use_bar = interactive(self.out, self.bar_stream) if bar is None else bar
        self.bar: Any = None
        self.done = 0

    def __enter__(self) -> "TrainingProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, record: Mapping[str, Any]) -> None:
        """Take one step or epoch record."""
        if not self.use_bar:
            if record.get("kind") == "epoch":
                print(epoch_line(record, self.epochs), file=self.out, flush=True)
            return
        if record.get("kind") == "step":
            self._step(record)
        elif record.get("kind") == "epoch" and self.bar is not None:
            self.bar.set_postfix(epoch=f"{record['epoch']}/{self.epochs}", val_loss=_num(record.get("val_loss")),
                                 val_auc=_num(record.get("val_auc")))

    def _step(self, record: Mapping[str, Any]) -> None:
        from tqdm import tqdm

        per_epoch = record["steps_per_epoch"]
        if self.bar is None:
            self.bar = tqdm(total=self.epochs * per_epoch, unit="step", file=self.bar_stream,
                            dynamic_ncols=True, initial=(record["epoch"] - 1) * per_epoch)
            self.done = self.bar.n
        target = (record["epoch"] - 1) * per_epoch + record["batch"]
        self.bar.update(max(0, target - self.done))
        self.done = max(self.done, target)
        self.bar.set_postfix(epoch=f"{record['epoch']}/{self.epochs}", loss=_num(record.get("loss")))
