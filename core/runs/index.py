"""The SQLite index of the run store: one row per run, for fast listing and comparison.

The index is a cache. The run directories are the truth; a missing, corrupt or
out-of-date index file is rebuilt from them (``RunIndex(source=...)`` is told how).
The file lives in ``<runs_dir>/index.sqlite`` and runs in WAL mode with a busy
timeout, so a worker process and the server can write to it at the same time.
Every operation opens its own short-lived connection: sqlite3 connections must not
cross threads, and the store is shared by Streamlit's script threads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from core.errors import StudioError

logger = logging.getLogger(__name__)

# Bump when the columns change: an index with another version is rebuilt.
SCHEMA_VERSION = 3  # 2: the damaged column; 3: experiment (core.experiments)

# (name, SQL type). ``stamp`` is internal: the mtimes of the files a row was read
# from, so that a listing can notice files changed behind the index's back.
_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT PRIMARY KEY"),
    ("name", "TEXT"),
    ("dataset", "TEXT"),
    ("model", "TEXT"),
    ("image_size", "INTEGER"),
    ("seed", "INTEGER"),
    ("status", "TEXT"),
    ("created", "TEXT"),
    ("started", "TEXT"),
    ("finished", "TEXT"),
    ("device", "TEXT"),
    ("epochs_done", "INTEGER"),
    ("epochs", "INTEGER"),
    ("test_acc", "REAL"),
    ("test_auc", "REAL"),
    ("test_f1", "REAL"),
    ("val_acc", "REAL"),
    ("val_auc", "REAL"),
    ("params_count", "INTEGER"),
    ("train_seconds", "REAL"),
    ("latency_ms", "REAL"),
    ("tags", "TEXT"),
    ("owner", "TEXT"),
    ("error", "TEXT"),
    ("damaged", "TEXT"),
    ("experiment", "TEXT"),  # the experiment a run belongs to (params.json "experiment")
    ("stamp", "TEXT"),
)
_ALL_COLUMNS = tuple(name for name, _ in _COLUMN_TYPES)

#: The columns a listing returns (and that ``order_by`` accepts).
COLUMNS: tuple[str, ...] = tuple(c for c in _ALL_COLUMNS if c != "stamp")

#: meta.json fields that feed a column; other meta updates (progress) skip the index.
INDEXED_META_FIELDS = frozenset(
    {"name", "status", "created", "started", "finished", "device", "epoch", "epochs_done",
     "epochs", "params_count", "train_seconds", "latency_ms", "tags", "owner", "error"}
)


def find_param(params: Mapping[str, Any], key: str) -> Any:
    """Look ``key`` up in params at the top level, then one section down.

    Args:
        params: the run's params.json content.
        key: e.g. ``"dataset"``, ``"model"``, ``"image_size"``, ``"seed"``, ``"epochs"``.

    Returns:
        The value; a dict value such as ``{"name": "resnet18", ...}`` gives its name;
        None when absent.
    """
    value = params.get(key)
    if value is None:
        for section in params.values():
            if isinstance(section, dict) and section.get(key) is not None:
                value = section[key]
                break
    if isinstance(value, dict):
        value = value.get("name")
    return value


def build_row(
    run_id: str,
    params: Mapping[str, Any] | None,
    meta: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None,
    problems: Iterable[str] = (),
    stamp: str = "",
) -> dict[str, Any]:
    """Make an index row from what could be read of a run's files.

    Args:
        run_id: the run's id.
        params: params.json content, or None when it is missing or unreadable.
        meta: meta.json content, or None when it is missing or unreadable (status
            becomes ``"unknown"``).
        evaluation: eval.json content, or None.
        problems: sentences describing files that could not be read; they are the
            ``damaged`` column, and go into the ``error`` column in front of the run's
            own error.
        stamp: the files' modification times (see ``RunStore``).

    Returns:
        A dict with every column; values of the wrong type are dropped to None, so a
        hand-edited file never breaks a listing.
    """
    params = params if isinstance(params, Mapping) else {}
    meta_ok = isinstance(meta, Mapping)
    meta = meta if meta_ok else {}
    evaluation = evaluation if isinstance(evaluation, Mapping) else {}
    test = evaluation.get("test") if isinstance(evaluation.get("test"), Mapping) else {}
    val = evaluation.get("val") if isinstance(evaluation.get("val"), Mapping) else {}
    macro = test.get("macro") if isinstance(test.get("macro"), Mapping) else {}
    tags = meta.get("tags")
    tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    errors = [p for p in problems if p]
    damaged = " ".join(errors) or None
    if isinstance(meta.get("error"), str) and meta["error"]:
        errors.append(meta["error"])
    status = meta.get("status") if isinstance(meta.get("status"), str) else "unknown"
    return {
        "run_id": run_id,
        "name": _as_str(meta.get("name")) or run_id,
        "dataset": _as_str(find_param(params, "dataset")),
        "model": _as_str(find_param(params, "model")),
        "image_size": _as_int(find_param(params, "image_size")),
        "seed": _as_int(find_param(params, "seed")),
        "status": status,
        "created": _as_str(meta.get("created")),
        "started": _as_str(meta.get("started")),
        "finished": _as_str(meta.get("finished")),
        "device": _as_str(meta.get("device")),
        "epochs_done": _as_int(meta.get("epochs_done", meta.get("epoch"))),
        "epochs": _as_int(meta.get("epochs", find_param(params, "epochs"))),
        "test_acc": _as_float(test.get("acc")),
        "test_auc": _as_float(test.get("auc")),
        "test_f1": _as_float(macro.get("f1", test.get("f1"))),
        "val_acc": _as_float(val.get("acc")),
        "val_auc": _as_float(val.get("auc")),
        "params_count": _as_int(meta.get("params_count")),
        "train_seconds": _as_float(meta.get("train_seconds")),
        "latency_ms": _as_float(meta.get("latency_ms")),
        "tags": json.dumps(tags),
        "owner": _as_str(meta.get("owner")),
        "error": " ".join(errors) or None,
        "damaged": damaged,
        "experiment": _as_str(params.get("experiment")),
        "stamp": stamp,
    }


class RunIndex:
    """The ``index.sqlite`` table of runs.

    Args:
        path: the database file.
        source: returns every row, read from the run directories; called to rebuild
            the index when the file is missing, corrupt or of another schema version.
    """

    def __init__(self, path: str | Path, source: Callable[[], Iterable[dict[str, Any]]]):
        self.path = Path(path)
        self._source = source

    # -- reading -------------------------------------------------------------------
    def query(
        self,
        *,
        dataset: str | None = None,
        model: str | None = None,
        status: str | Iterable[str] | None = None,
        order_by: str = "created",
        descending: bool = True,
    ) -> list[dict[str, Any]]:
        """Rows matching the filters, sorted; NULLs sort last either way.

        Args:
            dataset, model: exact matches, or None for any.
            status: one status or several, or None for any.
            order_by: a column name (see ``COLUMNS``); ties are broken by run id.
            descending: newest / largest first.

        Returns:
            Dicts with the ``COLUMNS`` plus ``stamp``; ``tags`` stays JSON text.
        """
        if order_by not in COLUMNS:
            raise StudioError(
                f"cannot sort runs by '{order_by}'; choose one of: {', '.join(COLUMNS)}"
            )
        where, args = [], []
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            if not statuses:
                return []
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        direction = "DESC" if descending else "ASC"
        # order_by is checked against COLUMNS above, so formatting it in is safe.
        sql = (
            f"SELECT {', '.join(_ALL_COLUMNS)} FROM runs"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {order_by} IS NULL, {order_by} {direction}, run_id {direction}"
        )
        return self._do(lambda con: [dict(r) for r in con.execute(sql, args).fetchall()])

    def ids(self) -> dict[str, str]:
        """Every run id in the index, mapped to the row's stamp."""
        return self._do(lambda con: dict(con.execute("SELECT run_id, stamp FROM runs").fetchall()))

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One row, or None."""
        sql = f"SELECT {', '.join(_ALL_COLUMNS)} FROM runs WHERE run_id = ?"
        rows = self._do(lambda con: con.execute(sql, (run_id,)).fetchall())
        return dict(rows[0]) if rows else None

    # -- writing -------------------------------------------------------------------
    def upsert(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one row (see :func:`build_row`)."""
        self.upsert_many([row])

    def upsert_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace several rows in one transaction."""
        values = [tuple(r.get(c) for c in _ALL_COLUMNS) for r in rows]
        if values:
            self._do(lambda con: _write(con, lambda: con.executemany(_INSERT, values)))

    def delete(self, run_id: str) -> None:
        """Remove one row (nothing happens when it is not there)."""
        self._do(lambda con: _write(con, lambda: con.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))))

    def rebuild(self) -> int:
        """Replace every row with rows read from the run directories.

        Returns:
            The number of runs indexed.
        """
        with closing(self._open()) as con:
            return self._refill(con)

    # -- plumbing ------------------------------------------------------------------
    def _do(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            with closing(self._open()) as con:
                return fn(con)
        except sqlite3.OperationalError:
            raise  # locked, read-only or out of disk: not corruption, don't throw data away
        except sqlite3.DatabaseError as exc:
            logger.warning("run index %s is corrupt (%s); rebuilding it from the run directories", self.path, exc)
            self._discard()
            with closing(self._open()) as con:
                return fn(con)

    def _open(self) -> sqlite3.Connection:
        fresh = not self.path.exists()
        if fresh:
            # A -wal/-shm pair left beside a deleted database would be replayed into it.
            self._discard()
        try:
            con = self._connect()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:  # "file is not a database"
            logger.warning("run index %s is unreadable (%s); rebuilding it", self.path, exc)
            self._discard()
            con, fresh = self._connect(), True
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            has_table = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()
            if fresh or version != SCHEMA_VERSION or not has_table:
                _write(con, lambda: _create_schema(con))
                self._refill(con)
        except BaseException:
            con.close()
            raise
        return con

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE takes the
        # write lock up front, so two writers wait on the busy timeout instead of failing).
        con = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; the index is a cache
        except BaseException:
            con.close()
            raise
        return con

    def _refill(self, con: sqlite3.Connection) -> int:
        rows = [tuple(r.get(c) for c in _ALL_COLUMNS) for r in self._source()]

        def replace() -> None:
            con.execute("DELETE FROM runs")
            con.executemany(_INSERT, rows)

        _write(con, replace)
        return len(rows)

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


_INSERT = (
    f"INSERT OR REPLACE INTO runs ({', '.join(_ALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ALL_COLUMNS))})"
)


def _create_schema(con: sqlite3.Connection) -> None:
    con.execute("DROP TABLE IF EXISTS runs")
    con.execute(f"CREATE TABLE runs ({', '.join(f'{n} {t}' for n, t in _COLUMN_TYPES)})")
    con.execute("CREATE INDEX runs_status ON runs (status, created)")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _write(con: sqlite3.Connection, fn: Callable[[], Any]) -> None:
    con.execute("BEGIN IMMEDIATE")
    try:
        fn()
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# SQLite's INTEGER is 64 bits; a larger Python int makes the whole insert fail.
_INT_RANGE = range(-(2**63), 2**63)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value in _INT_RANGE:
        return value
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
