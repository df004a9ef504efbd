"""The run store: one directory per run, and an SQLite index over them.

Layout of ``<runs_dir>/<run_id>/`` (MLflow / W&B style)::

    params.json          the run's configuration, written once at creation
    meta.json            status, times, pid, device, progress; read-merge-written
    metrics.jsonl        one JSON object per line: {"kind", "epoch", "step", "time", ...}
    checkpoints/best.pt  torch checkpoints (a dict of tensors and plain values)
    checkpoints/last.pt
    eval.json            {"val": {...}, "test": {"acc", "auc", "macro": {"f1"}, ...}}
    predictions.npz      val/test scores and labels
    cancel.request       present when someone asked the run to stop
    worker.log           the worker process's stdout and stderr

Every file except the two append-only streams (metrics.jsonl, worker.log) is written
atomically (:mod:`core.atomic`), so a reader never sees half a file and a full disk
leaves the previous version in place. Run ids are ``YYYYMMDD-HHMMSS-model-dataset-xxxx``
in UTC, so they sort by creation time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from core.atomic import _json_default, atomic_write, write_json
from core.errors import StudioError
from core.paths import runs_dir
from core.runs.index import INDEXED_META_FIELDS, RunIndex, build_row, find_param
from core.runs.owners import authorize, check_owner  # noqa: F401  (check_owner: imported from here too)
from core.runs.safe_json import DamagedJSON, loads_checked, metric_record_problem

try:  # POSIX; on other systems meta updates are not locked across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
#: A run in one of these states has no worker and will not get one unless resumed.
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "interrupted"})
CHECKPOINTS = ("best", "last")

# \Z, not $: "$" also matches before a trailing newline, and "run\n" is not a run id.
_RUN_ID = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC (these sort as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def validate_run_id(run_id: Any) -> str:
    """Check that ``run_id`` names a directory inside the runs dir and nothing else.

    Args:
        run_id: an id typed by a person or taken from a URL.

    Returns:
        The id, unchanged.

    Raises:
        StudioError: for anything but 1 to 128 letters, digits, ``-`` and ``_``
            (so ``..``, ``/`` and absolute paths can never escape the runs dir).
    """
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise StudioError(
            f"{run_id!r} is not a run id (only letters, digits, '-' and '_' are allowed); "
            "copy the id from `python -m core runs`"
        )
    return run_id


def new_run_id(params: Mapping[str, Any], now: datetime | None = None) -> str:
    """A fresh, sortable, readable run id such as ``20261123-193012-medvcnn-breastmnist-a1b2``.

    Args:
        params: the run's params; ``model`` and ``dataset`` name the run when present.
        now: the creation time (UTC); defaults to now.

    Returns:
        The id (only ``[A-Za-z0-9_-]``).
    """
    now = now or datetime.now(timezone.utc)
    parts = [now.strftime("%Y%m%d-%H%M%S")]
    for key in ("model", "dataset"):
        value = find_param(params, key)
        if isinstance(value, str):
            slug = re.sub(r"[^A-Za-z0-9_]+", "-", value).strip("-_")[:32]
            if slug:
                parts.append(slug)
    parts.append(secrets.token_hex(2))
    return "-".join(parts)


class Run:
    """One run directory: paths, readers and the writers the trainer uses.

    Args:
        run_dir: the directory (its name is the run id).
        store: the store it belongs to; when given, writes that change listed
            columns (meta, eval) also update the index.
    """

    def __init__(self, run_dir: str | os.PathLike, store: "RunStore | None" = None):
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
        """Merge ``fields`` into meta.json (see :meth:`RunStore.update_meta`)."""
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
        import torch

        path = self.checkpoint_path(which)
        if not isinstance(obj, Mapping):
            raise TypeError(f"a checkpoint is a dict, not {type(obj).__name__}")
        return atomic_write(path, lambda fh: torch.save(dict(obj), fh))

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


def last_completed_epoch(run: Run, meta: Mapping[str, Any] | None = None) -> int:
    """The last epoch the run finished: its last ``kind == "epoch"`` metrics line.

    meta.json's ``epoch`` is the epoch in progress while steps are logged, so it can be
    one ahead; ``epochs_done`` is used when there are no epoch lines.
    """
    epochs = [r.get("epoch") for r in run.metrics(kind="epoch")]
    epochs = [e for e in epochs if isinstance(e, int) and not isinstance(e, bool)]
    if epochs:
        return max(epochs)
    done = (meta or {}).get("epochs_done")
    return done if isinstance(done, int) and not isinstance(done, bool) else 0


def interrupted_reason(run: Run, meta: Mapping[str, Any], cause: str) -> str:
    """The ``error`` text of an interrupted run: after which epoch, why, and that it can be resumed.

    Args:
        run: the run (its metrics give the last finished epoch; its last checkpoint
            decides the advice).
        meta: its meta.json (``epochs`` = planned).
        cause: why it stopped, e.g. "its worker process was killed by signal 9".
    """
    epoch, epochs = last_completed_epoch(run, meta), meta.get("epochs")
    if epoch > 0:
        where = f"after epoch {epoch}" + (f" of {epochs}" if isinstance(epochs, int) else "")
    else:
        where = "before it finished its first epoch"
    todo = ("it can be resumed from its last checkpoint" if run.last_checkpoint.exists()
            else "it can be resumed, starting again from epoch 1")
    return f"Interrupted {where}: {cause}; {todo}."


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file with ``torch.load(weights_only=True, map_location="cpu")``.

    Args:
        path: a ``.pt`` file written by :meth:`Run.save_checkpoint` (or uploaded).

    Returns:
        The checkpoint dict.

    Raises:
        StudioError: when the file is not a PyTorch file, carries pickled objects other
            than tensors and plain values (code that would run on load), or is not a dict.
    """
    import pickle

    import torch

    path = Path(path)
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise StudioError(
            f"{path.name} holds Python objects other than tensors and plain values, "
            "which could run code when loaded, so it was not opened; use a checkpoint the studio wrote"
        ) from exc
    except FileNotFoundError:
        raise StudioError(f"checkpoint {path} does not exist; check the path") from None
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged files
        raise StudioError(
            f"{path.name} cannot be read as a PyTorch checkpoint ({type(exc).__name__}); "
            "it may be truncated or another kind of file, so train again or use another checkpoint"
        ) from exc
    if not isinstance(obj, dict):
        raise StudioError(
            f"{path.name} holds a {type(obj).__name__}, not a studio checkpoint (a dict); "
            "use a checkpoint the studio wrote"
        )
    return obj


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Exclusive lock on the run directory, across threads and processes (flock)."""
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
    with _locked(run.dir):
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


class RunStore:
    """All runs under one directory, with an SQLite index for listing.

    Safe to share between threads (Streamlit's ``st.cache_resource``) and to use from
    several processes at once (the server and its workers). Opening it marks running runs
    whose process is provably gone ``interrupted`` (:mod:`core.runs.reaper`).

    Args:
        root: the runs directory; None means :func:`core.paths.runs_dir` (``--runs-dir``
            > ``$STUDIO_RUNS_DIR`` > ``./runs``).
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = runs_dir(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = RunIndex(self.root / "index.sqlite", source=self._rows_from_disk)
        # A foreground run killed outright (SIGKILL, the OOM killer) has nobody to settle it.
        from core.runs.reaper import interrupt_dead_runs

        interrupt_dead_runs(self)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, params: Mapping[str, Any], name: str | None = None, owner: str | None = None) -> Run:
        """Create a run directory with its params and a ``queued`` meta.

        The directory is assembled under a hidden name and renamed into place, so other
        processes never see a run without its params.

        Args:
            params: the configuration; JSON-serialisable (numpy values and paths are fine).
            name: a display name; defaults to the run id.
            owner: who asked for it (a user name), if known.

        Returns:
            The new run.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict, not {type(params).__name__}")
        json.dumps(dict(params), default=_json_default)  # fail before anything is on disk
        name = _clean_name(name) if name is not None else None
        for _ in range(20):
            run_id = new_run_id(params)
            staging = Run(self.root / f".creating-{run_id}")
            staging.dir.mkdir()
            try:
                staging.write_params(params)
                created = utc_now()
                write_json(staging.meta_path, {
                    "run_id": run_id, "name": name or run_id, "status": "queued",
                    "created": created, "queued": created, "started": None, "finished": None,
                    "pid": None, "device": None, "error": None, "tags": [], "owner": owner,
                    "epoch": 0, "epochs": find_param(params, "epochs"),
                })
                os.rename(staging.dir, self.root / run_id)
            except OSError as exc:
                shutil.rmtree(staging.dir, ignore_errors=True)
                if (self.root / run_id).exists():
                    continue  # same second, same random suffix: draw again
                raise StudioError(f"cannot create a run in {self.root} ({exc}); free disk space or fix permissions") from exc
            run = Run(self.root / run_id, self)
            self.refresh_from_disk(run_id)
            return run
        raise StudioError(f"could not find a free run id in {self.root}; try again")

    def get(self, run_id: str) -> Run:
        """The run with this id.

        Raises:
            StudioError: for an invalid id or a run that is not there.
        """
        validate_run_id(run_id)
        run_dir = self.root / run_id
        if not run_dir.is_dir():
            raise StudioError(f"no run '{run_id}' in {self.root}; `python -m core runs` lists them")
        return Run(run_dir, self)

    def exists(self, run_id: str) -> bool:
        """True when a run with this (valid) id is there."""
        return (self.root / validate_run_id(run_id)).is_dir()

    def list_runs(
        self,
        dataset: str | None = None,
        model: str | None = None,
        status: str | Iterable[str] | None = None,
        tag: str | None = None,
        order_by: str = "created",
        descending: bool = True,
    ) -> list[dict[str, Any]]:
        """Runs from the index, after bringing it in line with the directories.

        Rows whose directory was deleted by hand are dropped, runs copied in are added,
        and rows whose files changed behind the index's back (hand edits, a worker killed
        between writes) are re-read.

        Args:
            dataset, model, status: filters (exact; status may be several).
            tag: keep runs carrying this tag.
            order_by: a column of :data:`core.runs.index.COLUMNS`.
            descending: newest / largest first.

        Returns:
            One dict per run: the index columns (``tags`` as a list) plus ``dir``.
        """
        self._sync_index()
        rows = self.index.query(dataset=dataset, model=model, status=status, order_by=order_by, descending=descending)
        out = []
        for row in rows:
            row.pop("stamp", None)
            try:
                row["tags"] = json.loads(row["tags"] or "[]")
            except ValueError:
                row["tags"] = []
            if tag is not None and tag not in row["tags"]:
                continue
            row["dir"] = str(self.root / row["run_id"])
            out.append(row)
        return out

    def update_meta(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into meta.json (atomic read-merge-write), then update the index.

        Returns:
            The merged meta.
        """
        run = self.get(run_id)
        meta = merge_meta(run, fields)
        if INDEXED_META_FIELDS.intersection(fields):
            self.refresh_from_disk(run_id)
        return meta  # type: ignore[return-value]

    def update_meta_if(self, run_id: str, condition: MetaCondition, **fields: Any) -> dict[str, Any] | None:
        """Like :meth:`update_meta`, but only while ``condition`` holds, checked under the lock.

        This is how the job runner and the worker claim a run without racing each other.

        Args:
            run_id: the run.
            condition: the statuses the run must be in, or a callable taking the current
                meta and returning True to write.
            **fields: the fields to set.

        Returns:
            The merged meta, or None when the condition did not hold.
        """
        run = self.get(run_id)
        meta = merge_meta(run, fields, condition if callable(condition) else tuple(condition))
        if meta is not None:
            self.refresh_from_disk(run_id)
        return meta

    def rename(self, run_id: str, name: str, owner: str | None = None) -> None:
        """Give a run a new display name (in the demo only its owner may: :mod:`core.runs.owners`)."""
        authorize(self, run_id, owner, "rename")
        self.update_meta(run_id, name=_clean_name(name))

    def set_tags(self, run_id: str, tags: Iterable[str], owner: str | None = None) -> list[str]:
        """Replace a run's tags (stripped, blanks and duplicates dropped, order kept).

        In the demo only the run's owner may (:mod:`core.runs.owners`); ``owner=None``
        (the command line) is not checked.

        Returns:
            The tags stored.
        """
        authorize(self, run_id, owner, "tag")
        if isinstance(tags, str):
            tags = [tags]
        clean: list[str] = []
        for tag in tags:
            if not isinstance(tag, str):
                raise StudioError(f"tag {tag!r} is not text; tags are short words such as 'baseline'")
            tag = tag.strip()
            if len(tag) > 64:
                raise StudioError(f"tag '{tag[:20]}...' is longer than 64 characters; shorten it")
            if tag and tag not in clean:
                clean.append(tag)
        self.update_meta(run_id, tags=clean)
        return clean

    def delete(self, run_id: str, owner: str | None = None) -> None:
        """Remove a run's directory and its index row.

        Args:
            run_id: the run.
            owner: who asks (a browser session or signed-in user); in the hosted demo only
                the run's own owner may delete it. None (the command line) is not checked.

        Raises:
            StudioError: while the run is running (cancel it first), or when it is not
                the asker's in the demo.
        """
        run = authorize(self, run_id, owner, "delete")
        try:
            meta = run.meta()
        except StudioError:
            meta = {}  # a damaged run can always be deleted (in the demo, from the command line)
        status = meta.get("status")
        if status == "running":
            raise StudioError(f"run '{run_id}' is running; cancel it first, then delete it")
        # Move it out of sight first so a listing never shows half a directory.
        trash = self.root / f".deleting-{run_id}-{secrets.token_hex(2)}"
        os.rename(run.dir, trash)
        self.index.delete(run_id)
        shutil.rmtree(trash, ignore_errors=True)

    # -- index ---------------------------------------------------------------------------
    def rebuild_index(self) -> int:
        """Rebuild index.sqlite from the run directories.

        Returns:
            The number of runs indexed.
        """
        return self.index.rebuild()

    def refresh_from_disk(self, run_id: str) -> dict[str, Any] | None:
        """Re-read one run's files into its index row (the row goes if the run is gone).

        Returns:
            The row, or None when the run no longer exists.
        """
        validate_run_id(run_id)
        run_dir = self.root / run_id
        if not run_dir.is_dir():
            self.index.delete(run_id)
            return None
        row = self._read_row(run_dir)
        self.index.upsert(row)
        return row

    def _run_dirs(self) -> list[Path]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return [
            Path(e.path) for e in entries
            if _RUN_ID.match(e.name) and e.is_dir() and (
                os.path.exists(os.path.join(e.path, "meta.json"))
                or os.path.exists(os.path.join(e.path, "params.json"))
            )
        ]

    def _rows_from_disk(self) -> list[dict[str, Any]]:
        return [self._read_row(d) for d in self._run_dirs()]

    def _sync_index(self) -> None:
        indexed = self.index.ids()
        on_disk = {d.name: d for d in self._run_dirs()}
        for run_id in indexed.keys() - on_disk.keys():
            self.index.delete(run_id)
        stale = [
            self._read_row(d) for run_id, d in on_disk.items()
            if indexed.get(run_id) != _stamp(Run(d))
        ]
        self.index.upsert_many(stale)

    def _read_row(self, run_dir: Path) -> dict[str, Any]:
        run = Run(run_dir)
        stamp = _stamp(run)  # before reading, so a write racing us makes the row stale
        problems: list[str] = []
        values: dict[str, Any] = {}
        for key, reader in (("params", run.params), ("meta", run.meta), ("eval", run.eval)):
            try:
                values[key] = reader()
            except StudioError as exc:
                values[key] = None
                problems.append(str(exc) + ".")
        return build_row(run.id, values["params"], values["meta"], values["eval"], problems, stamp)


def _stamp(run: Run) -> str:
    parts = []
    for path in (run.params_path, run.meta_path, run.eval_path):
        try:
            st = os.stat(path)
            # Inode too: atomic writes replace the file, and two writes can share an mtime tick.
            parts.append(f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}")
        except FileNotFoundError:
            parts.append("-")
    return ":".join(parts)


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise StudioError("a run name must be some text; type a name such as 'resnet18 baseline'")
    name = " ".join(name.split())
    if len(name) > 200:
        raise StudioError(f"run name is {len(name)} characters long; keep it under 200")
    return name
