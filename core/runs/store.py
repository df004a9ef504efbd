"""The run store: one directory per run (:mod:`core.runs.run`), and an SQLite index over them.

The layout of ``<runs_dir>/<run_id>/`` and how each file is written: :mod:`core.runs.run`.
Run ids are ``YYYYMMDD-HHMMSS-model-dataset-xxxx`` in UTC, so they sort by creation time.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from core.atomic import _json_default, write_json
from core.checkpoint import load_checkpoint_file  # noqa: F401  (imported from here too)
from core.errors import StudioError
from core.paths import readable_dataset_name, runs_dir
from core.runs.index import INDEXED_META_FIELDS, RunIndex, build_row, find_param
from core.runs.lifecycle import (  # noqa: F401  (imported from here too)
    FINAL_STATUSES,
    STATUSES,
    interrupted_reason,
    last_completed_epoch,
    utc_now,
)
from core.runs.owners import authorize, check_owner  # noqa: F401  (check_owner: imported from here too)
from core.runs.run import CHECKPOINTS, MetaCondition, Run, merge_meta  # noqa: F401

# \Z, not $: "$" also matches before a trailing newline, and "run\n" is not a run id.
_RUN_ID = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")


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
        params: the run's params; ``model`` and ``dataset`` name the run when present
            (a folder dataset by :func:`core.paths.readable_dataset_name`).
        now: the creation time (UTC); defaults to now.

    Returns:
        The id (only ``[A-Za-z0-9_-]``).
    """
    now = now or datetime.now(timezone.utc)
    parts = [now.strftime("%Y%m%d-%H%M%S")]
    for key in ("model", "dataset"):
        value = find_param(params, key)
        if isinstance(value, str):
            if key == "dataset":  # an uploaded folder by its name, not this server's path to it
                value = readable_dataset_name(value)
            slug = re.sub(r"[^A-Za-z0-9_]+", "-", value).strip("-_")[:32]
            if slug:
                parts.append(slug)
    parts.append(secrets.token_hex(2))
    return "-".join(parts)


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
