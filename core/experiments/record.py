"""The experiment record: ``<runs_dir>/experiments/<id>/experiment.json`` and its index table.

An experiment is a group of ordinary runs planned, launched and followed as one thing. Its
file holds what was asked for (kind, plan, metric), what happened (status, times, member
run ids, the driver process) and is read-merge-written atomically under a lock, because
the driver and a person cancelling it write it from different processes. The directories
are the truth; the ``experiments`` table in the store's ``index.sqlite`` is a cache for
listing, refreshed from them whenever it is read.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from core.atomic import write_json
from core.errors import StudioError
from core.runs.run import lock_directory

KINDS = ("sweep", "seeds", "ablation", "auto")
#: planned: written, no driver yet; running: a driver is following it.
STATUSES = ("planned", "running", "completed", "cancelled", "failed", "interrupted")
FINAL_STATUSES = frozenset({"completed", "cancelled", "failed", "interrupted"})
FILE = "experiment.json"
_ID = re.compile(r"\Aexp-[A-Za-z0-9_-]{1,120}\Z")


def utc_now() -> str:
    """The current time in UTC, ISO 8601 (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def parse_time(text: str | None) -> float | None:
    """Unix seconds of an ISO time written by :func:`utc_now`, or None."""
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except (TypeError, ValueError):
        return None


def validate_experiment_id(exp_id: Any) -> str:
    """The id unchanged, or a StudioError when it could name anything but an experiment folder."""
    if not isinstance(exp_id, str) or not _ID.match(exp_id):
        raise StudioError(f"{exp_id!r} is not an experiment id (they look like exp-20261202-171500-sweep-a1b2); "
                          "copy one from `python -m core experiments`")
    return exp_id


def new_experiment_id(kind: str, now: datetime | None = None) -> str:
    """A fresh sortable id such as ``exp-20261202-171500-sweep-a1b2``."""
    now = now or datetime.now(timezone.utc)
    return f"exp-{now.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(2)}"


@dataclass
class Experiment:
    """One experiment as stored in experiment.json.

    Attributes:
        id: ``exp-...``.
        name: a display name.
        kind: one of :data:`KINDS`.
        dataset: the dataset every member trains on.
        plan: for sweep, seeds and ablation ``{"runs": [{"label", "settings", "config"}, ...]}``
            (``config`` a :class:`core.train.TrainConfig` dict); for auto ``{"minutes", "space",
            "base", ...}`` (see :mod:`core.experiments.space`).
        metric: the validation metric members are ranked by (``val_auc`` or ``val_acc``).
        status: one of :data:`STATUSES`.
        members: run ids in the order they were submitted.
        owner: who started it (demo sessions), or None.
        created, started, finished: UTC times.
        error: why it failed or was interrupted.
        cancel_requested: someone asked it to stop.
        driver: ``{"pid", "pid_created", "host"}`` of the process following it.
        notes: kind-specific facts (the ablation's study key, the seeds' source run).
    """

    id: str
    name: str
    kind: str
    dataset: str
    plan: dict[str, Any]
    metric: str = "val_auc"
    status: str = "planned"
    members: list[str] = field(default_factory=list)
    owner: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    cancel_requested: bool = False
    driver: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Experiment":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def planned_runs(self) -> list[dict[str, Any]]:
        """The plan's run list (empty for auto, whose trials are drawn as it goes)."""
        return list(self.plan.get("runs") or [])


class ExperimentBook:
    """The experiments of one run store: their folders and their index table.

    Args:
        store: the :class:`core.runs.RunStore` whose runs the experiments group.
    """

    def __init__(self, store: Any):
        self.store = store
        self.root = Path(store.root) / "experiments"
        self.db = Path(store.root) / "index.sqlite"

    def dir(self, exp_id: str) -> Path:
        return self.root / validate_experiment_id(exp_id)

    # -- files -------------------------------------------------------------------------
    def create(self, exp: Experiment) -> Experiment:
        """Write a new experiment's folder and file (assembled under a hidden name, then renamed)."""
        exp.created = exp.created or utc_now()
        final = self.dir(exp.id)
        if final.exists():
            raise StudioError(f"experiment {exp.id} exists already; plan it again for a fresh id")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".creating-{exp.id}"
        staging.mkdir()
        try:
            write_json(staging / FILE, exp.to_dict())
            os.rename(staging, final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise StudioError(f"cannot write experiment {exp.id} in {self.root} ({exc}); free disk space") from exc
        self._upsert([self._row(final)])
        return exp

    def get(self, exp_id: str) -> Experiment:
        """The experiment, or a StudioError naming how to find one."""
        path = self.dir(exp_id) / FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise StudioError(f"no experiment '{exp_id}' in {self.root}; `python -m core experiments` lists them") from None
        except (OSError, ValueError) as exc:
            raise StudioError(f"{path} cannot be read ({exc}); delete the experiment folder") from exc
        if not isinstance(data, dict):
            raise StudioError(f"{path} does not hold an experiment; delete the experiment folder")
        return Experiment.from_dict(data)

    def exists(self, exp_id: str) -> bool:
        return (self.dir(exp_id) / FILE).is_file()

    def update(self, exp_id: str, **changes: Any) -> Experiment:
        """Read, merge ``changes``, write back atomically under the experiment's lock.

        ``add_members=[...]`` appends run ids (kept unique) instead of replacing the list.
        """
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {changes['status']!r}")
        folder = self.dir(exp_id)
        add = changes.pop("add_members", None)
        with _locked(folder):
            exp = self.get(exp_id)
            for key, value in changes.items():
                if not hasattr(exp, key):
                    raise ValueError(f"an experiment has no field {key!r}")
                setattr(exp, key, value)
            for run_id in add or ():
                if run_id not in exp.members:
                    exp.members.append(run_id)
            write_json(folder / FILE, exp.to_dict())
        self._upsert([self._row(folder)])
        return exp

    def remove(self, exp_id: str) -> None:
        """Delete the experiment's folder and index row (its runs are left alone)."""
        folder = self.dir(exp_id)
        if folder.exists():
            trash = self.root / f".deleting-{exp_id}-{secrets.token_hex(2)}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        self._do(lambda con: _write(con, "DELETE FROM experiments WHERE exp_id = ?", [(exp_id,)]))

    # -- index -------------------------------------------------------------------------
    def list(self, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Index rows (newest first) after bringing the table in line with the folders.

        Returns:
            Dicts with ``exp_id, name, kind, dataset, status, created, owner, planned, members``.
        """
        on_disk = {p.name: p for p in self._folders()}
        indexed = self._do(lambda con: dict(con.execute("SELECT exp_id, stamp FROM experiments").fetchall()))
        gone = [(i,) for i in indexed.keys() - on_disk.keys()]
        if gone:
            self._do(lambda con: _write(con, "DELETE FROM experiments WHERE exp_id = ?", gone))
        self._upsert([self._row(p) for i, p in on_disk.items() if indexed.get(i) != _stamp(p)])
        sql, args = "SELECT * FROM experiments", []
        where = [(c, v) for c, v in (("kind", kind), ("status", status)) if v is not None]
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
            args = [v for _, v in where]
        sql += " ORDER BY created DESC, exp_id DESC"
        rows = self._do(lambda con: [dict(r) for r in con.execute(sql, args).fetchall()])
        for row in rows:
            row.pop("stamp", None)
        return rows

    def _folders(self) -> list[Path]:
        try:
            return [Path(e.path) for e in os.scandir(self.root)
                    if _ID.match(e.name) and os.path.isfile(os.path.join(e.path, FILE))]
        except FileNotFoundError:
            return []

    def _row(self, folder: Path) -> dict[str, Any]:
        stamp = _stamp(folder)
        try:
            exp = self.get(folder.name)
        except StudioError as exc:
            return {"exp_id": folder.name, "name": folder.name, "kind": None, "dataset": None, "status": "damaged",
                    "created": None, "owner": None, "planned": None, "members": 0, "error": str(exc), "stamp": stamp}
        return {"exp_id": exp.id, "name": exp.name, "kind": exp.kind, "dataset": exp.dataset, "status": exp.status,
                "created": exp.created, "owner": exp.owner, "planned": len(exp.planned_runs) or None,
                "members": len(exp.members), "error": exp.error, "stamp": stamp}

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            sql = f"INSERT OR REPLACE INTO experiments ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})"
            self._do(lambda con: _write(con, sql, [tuple(r.get(c) for c in _COLS) for r in rows]))

    def _do(self, fn):
        try:
            with closing(self._connect()) as con:
                return fn(con)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError:
            # The run index rebuilds a corrupt file; the table comes back from the folders.
            self.store.rebuild_index()
            with closing(self._connect()) as con:
                return fn(con)

    def _connect(self) -> sqlite3.Connection:
        self.store.index.ids()  # lets the run index create (or repair) the file first
        con = sqlite3.connect(str(self.db), timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = 30000")
        con.execute(f"CREATE TABLE IF NOT EXISTS experiments ({', '.join(f'{c} {t}' for c, t in _COLUMN_TYPES)})")
        return con


_COLUMN_TYPES = (("exp_id", "TEXT PRIMARY KEY"), ("name", "TEXT"), ("kind", "TEXT"), ("dataset", "TEXT"),
                 ("status", "TEXT"), ("created", "TEXT"), ("owner", "TEXT"), ("planned", "INTEGER"),
                 ("members", "INTEGER"), ("error", "TEXT"), ("stamp", "TEXT"))
_COLS = tuple(c for c, _ in _COLUMN_TYPES)


def _write(con: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    con.execute("BEGIN IMMEDIATE")
    try:
        con.executemany(sql, rows)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _stamp(folder: Path) -> str:
    try:
        st = os.stat(folder / FILE)
    except FileNotFoundError:
        return "-"
    return f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    if not folder.is_dir():
        raise StudioError(f"experiment '{folder.name}' no longer exists in {folder.parent}; it was deleted")
    with lock_directory(folder):
        yield
