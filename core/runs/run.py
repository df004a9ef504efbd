"""One run directory (:class:`Run`) and the locked read-merge-write of its meta.json.

Layout of ``<runs_dir>/<run_id>/`` (MLflow / W&B style)::

    params.json          the run's configuration, written once at creation
    meta.json            status, times, pid, device, progress; read-merge-written
    metrics.jsonl        one JSON object per line: {"kind", "epoch", "step", "time", ...}
    checkpoints/best.pt  torch checkpoints (the format: core.checkpoint)
    checkpoints/last.pt
    eval.json            {"val": {...}, "test": {"acc", "auc", "macro": {"f1"}, ...}}
    predictions.npz      val/test scores and labels
    cancel.request       present when someone asked the run to stop
    worker.log           the worker process's stdout and stderr

Every file except the two append-only streams (metrics.jsonl, worker.log) is written
atomically (:mod:`core.atomic`), so a reader never sees half a file and a full disk
leaves the previous version in place. The store over many runs is :mod:`core.runs.store`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from core.atomic import _json_default, atomic_write, write_json
from core.checkpoint import load_checkpoint_file, save_checkpoint_file
from core.errors import StudioError
from core.runs.lifecycle import STATUSES, utc_now
from core.runs.safe_json import DamagedJSON, loads_checked, metric_record_problem

try:  # POSIX; on other systems meta updates are not locked across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

CHECKPOINTS = ("best", "last")


class Run:
    """One run directory: paths, readers and the writers the trainer uses.

    Args:
        run_dir: the directory (its name is the run id).
        store: the :class:`core.runs.store.RunStore` it belongs to; when given, writes that change listed
            columns (meta, eval) also update the index.
    """

    def __init__(self, run_dir: str | os.PathLike, store: Any = None):
        self.dir = Path(run_dir)
        self.id = self.dir.name
        self._store = store

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    # -- paths -----------------------------------------------------------------------
    @property
    def params_path(self) -> Path:
        return self.dir / "params.json"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def eval_path(self) -> Path:
        return self.dir / "eval.json"

    @property
    def predictions_path(self) -> Path:
        return self.dir / "predictions.npz"

    @property
    def cancel_path(self) -> Path:
        return self.dir / "cancel.request"

    @property
    def log_path(self) -> Path:
        return self.dir / "worker.log"

    def checkpoint_path(self, which: str) -> Path:
        """``checkpoints/best.pt`` or ``checkpoints/last.pt``."""
        if which not in CHECKPOINTS:
            raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, not {which!r}")
        return self.checkpoint_dir / f"{which}.pt"

    # -- params and meta -------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The run's configuration (params.json)."""
        return self._read_json(self.params_path, required=True, obj=True)

    def write_params(self, params: Mapping[str, Any]) -> None:
        """Write params.json; only once in a run's life.

        Raises:
            StudioError: when params.json already exists.
        """
        if self.params_path.exists():
            raise StudioError(
                f"params of run '{self.id}' are already written and never change; "
                "create a new run to train with other settings"
            )
        write_json(self.params_path, dict(params))

    def meta(self) -> dict[str, Any]:
        """The run's status record (meta.json); ``{}`` before it exists."""
        return self._read_json(self.meta_path, required=False, obj=True) or {}

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into meta.json (see :meth:`core.runs.store.RunStore.update_meta`)."""
        if self._store is not None:
            return self._store.update_meta(self.id, **fields)
        return merge_meta(self, fields)

    # -- metrics -----------------------------------------------------------------------
    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one record to metrics.jsonl with a single write, then flush.

        Args:
            record: e.g. ``{"kind": "epoch", "epoch": 3, "step": 120, "train_loss": ...}``;
                ``time`` (Unix seconds) is added when absent.
        """
        if not isinstance(record, Mapping):
            raise TypeError(f"a metrics record is a dict, not {type(record).__name__}")
        record = dict(record)
        record.setdefault("time", time.time())
        line = (json.dumps(record, default=_json_default) + "\n").encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.metrics_path, "a+b") as fh:
                # A write cut short (full disk, killed process) leaves a line without its
                # newline; start a fresh line so only that fragment is lost.
                if fh.seek(0, os.SEEK_END) > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        line = b"\n" + line
                fh.write(line)
                fh.flush()
        except OSError as exc:
            if exc.filename is not None or exc.errno is None:
                raise
            raise OSError(exc.errno, exc.strerror, str(self.metrics_path)) from exc  # say which file

    def metrics(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The records of metrics.jsonl, oldest first.

        Args:
            kind: keep only records with this ``kind`` (``"epoch"``, ``"step"``, ...).

        Returns:
            The records; a malformed line (a write cut short, a hand edit such as
            ``"epoch": "two"``) is skipped with a warning.
        """
        try:
            raw = self.metrics_path.read_bytes()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = loads_checked(line)
            except ValueError as exc:  # DamagedJSON too: a number or nesting nothing can use
                logger.warning("%s line %d is not usable JSON (%s); skipped", self.metrics_path, number, exc)
                continue
            if not isinstance(record, dict) or (kind is not None and record.get("kind") != kind):
                continue
            problem = metric_record_problem(record)
            if problem is not None:  # a hand edit such as "epoch": "two" would break every chart
                logger.warning("%s line %d: %s; skipped", self.metrics_path, number, problem)
                continue
            records.append(record)
        return records

    # -- evaluation and predictions --------------------------------------------------------
    def write_eval(self, evaluation: Mapping[str, Any]) -> None:
        """Write eval.json: ``{"val": {...}, "test": {"acc", "auc", "macro": {"f1"}, ...}}``."""
        write_json(self.eval_path, dict(evaluation))
        if self._store is not None:
            self._store.refresh_from_disk(self.id)

    def eval(self) -> dict[str, Any] | None:
        """eval.json, or None before the run was evaluated."""
        return self._read_json(self.eval_path, required=False, obj=True)

    def write_predictions(self, **arrays: Any) -> None:
        """Write predictions.npz, e.g. ``val_scores=..., val_labels=..., test_scores=...``.

        Arrays of Python objects are refused: they could only be read back with pickle.
        """
        import numpy as np

        converted = {name: np.asarray(value) for name, value in arrays.items()}
        for name, value in converted.items():
            if value.dtype.hasobject:
                raise TypeError(f"prediction array {name!r} holds Python objects; pass numbers or strings")
        atomic_write(self.predictions_path, lambda fh: np.savez(fh, **converted))

    def predictions(self) -> "dict[str, np.ndarray] | None":
        """The arrays of predictions.npz, or None before they were written."""
        import numpy as np

        if not self.predictions_path.exists():
            return None
        try:
            with np.load(self.predictions_path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as exc:
            raise StudioError(
                f"predictions.npz of run '{self.id}' cannot be read ({exc}); evaluate the run again"
            ) from exc

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, which: str, obj: Mapping[str, Any]) -> Path:
        """Save a checkpoint atomically (torch.save into a temp file, then rename).

        Args:
            which: ``"best"`` or ``"last"``.
            obj: a dict of tensors and plain values (state dicts, epoch, model args,
                class names); anything else could not be loaded with ``weights_only``.

        Returns:
            The checkpoint's path.
        """
        return save_checkpoint_file(self.checkpoint_path(which), obj)

    def load_checkpoint(self, which: str) -> dict[str, Any]:
        """Load ``checkpoints/<which>.pt`` on the CPU, refusing anything but data.

        Raises:
            StudioError: when it is missing, unreadable, or not a studio checkpoint.
        """
        path = self.checkpoint_path(which)
        if not path.exists():
            raise StudioError(
                f"run '{self.id}' has no {which} checkpoint yet ({path}); "
                "train it first or pick another run"
            )
        return load_checkpoint_file(path)

    # -- cancellation ----------------------------------------------------------------------
    def request_cancel(self) -> None:
        """Ask the run's worker to stop (from any process: it polls :meth:`cancel_requested`)."""
        write_json(self.cancel_path, {"requested": utc_now(), "by_pid": os.getpid()})

    def cancel_requested(self) -> bool:
        """True once someone asked the run to stop."""
        return self.cancel_path.exists()

    def clear_cancel(self) -> None:
        """Forget a cancel request (before resuming a run)."""
        self.cancel_path.unlink(missing_ok=True)

    # -- helpers -----------------------------------------------------------------------------
    def _read_json(self, path: Path, required: bool, obj: bool = False) -> Any:
        try:
            text = path.read_text()
        except FileNotFoundError:
            if required:
                raise StudioError(
                    f"run '{self.id}' has no {path.name} in {self.dir}; the run is damaged, delete it"
                ) from None
            return None
        except (OSError, UnicodeDecodeError) as exc:  # a directory in its place, binary junk
            raise StudioError(f"{path.name} of run '{self.id}' cannot be read ({exc}); fix or delete {path}") from exc
        try:
            value = loads_checked(text)
        except DamagedJSON as exc:
            raise StudioError(f"{path.name} of run '{self.id}' holds {exc}; fix or delete {path}") from None
        except ValueError as exc:
            raise StudioError(
                f"{path.name} of run '{self.id}' is not valid JSON ({exc}); fix or delete {path}"
            ) from exc
        if obj and not isinstance(value, dict):
            # Valid JSON of the wrong shape (a hand edit): callers read fields from it.
            raise StudioError(
                f"{path.name} of run '{self.id}' holds a JSON {type(value).__name__}, not an object; fix or delete {path}"
            )
        return value


@contextmanager
def lock_directory(run_dir: Path) -> Iterator[None]:
    """Exclusive lock on a directory (a run's, an experiment's), across threads and processes (flock)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


MetaCondition = Union[Iterable[Optional[str]], Callable[[Mapping[str, Any]], bool]]


def merge_meta(run: Run, fields: Mapping[str, Any], condition: MetaCondition | None = None) -> dict[str, Any] | None:
    """Read meta.json, merge ``fields``, write it back atomically, under the run's lock.

    Args:
        run: the run.
        fields: the fields to set; ``status`` must be one of ``STATUSES``.
        condition: when given, write only if the current status is one of these
            statuses, or, for a callable, if it returns True for the current meta.

    Returns:
        The merged meta, or None when ``condition`` did not hold (nothing written).
    """
    _check_fields(fields)
    if not run.dir.is_dir():
        raise StudioError(f"run '{run.id}' no longer exists in {run.dir.parent}; it was deleted")
    with lock_directory(run.dir):
        damaged: StudioError | None = None
        try:
            meta = run.meta()
        except StudioError as exc:
            damaged, meta = exc, {}
        if not isinstance(meta, dict):
            meta = {}
        if condition is not None:
            holds = condition(meta) if callable(condition) else meta.get("status") in set(condition)
            if not holds:
                return None
        if damaged is not None:
            # Keep the damaged file for a person to look at, and carry on with a fresh one.
            backup = run.meta_path.with_name("meta.json.corrupt")
            os.replace(run.meta_path, backup)
            logger.warning("%s; moved it to %s", damaged, backup)
        meta.update(fields)
        meta["updated"] = utc_now()
        write_json(run.meta_path, meta)
    return meta


def _check_fields(fields: Mapping[str, Any]) -> None:
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {fields['status']!r}")
    if "tags" in fields and not (
        isinstance(fields["tags"], list) and all(isinstance(t, str) for t in fields["tags"])
    ):
        raise ValueError("tags must be a list of strings")
