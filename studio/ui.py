"""What the pages share: the cached run store and job runner, the sidebar, the error
boundary, and cached dataset look-ups. No engine code: the uploads store is
:mod:`core.data.uploads`, MedMNIST facts :mod:`core.data.medmnist_info`, step timing
:mod:`core.train.step_timer`; number and message formatting is :mod:`studio.formatting` and
sign-in :mod:`studio.sign_in` (their names are re-exported here, as the pages call them).

Only thread-safe shared objects go into ``st.cache_resource`` (the run store, the job
runner, a loaded model); data and tables go into ``st.cache_data``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import streamlit as st

from core.data import uploads
from core.data.uploads import owner_folder  # noqa: F401 - the pages' name for it
from core.errors import StudioError
from core.paths import data_dir, runs_dir
from core.train.step_timer import epoch_seconds, measure_train_step  # noqa: F401 - the pages' names
from studio.formatting import (STATUS_ICONS, STATUS_LABELS, fmt_count, fmt_duration, fmt_estimate,  # noqa: F401
                               fmt_metric, fmt_time, plain, sentence, status_label)
from studio.safe_text import md_escape
from studio.sign_in import auth_settings, require_sign_in, signed_in_user  # noqa: F401 - app.py calls ui.require_sign_in

log = logging.getLogger("studio")

# Page files, relative to studio/app.py (st.Page and st.page_link resolve them from there).
PAGES = {
    "home": "../pages/home.py",
    "datasets": "../pages/datasets.py",
    "train": "../pages/train.py",
    "compare": "../pages/compare.py",
    "classify": "../pages/classify.py",
}

ACTIVE = ("queued", "running")


# ------------------------------------------------------------------ shared objects
@st.cache_resource(show_spinner=False)
def _store(root: str):
    from core.runs import RunStore

    return RunStore(root)


@st.cache_resource(show_spinner=False)
def _runner(root: str):
    from core.runs import JobRunner

    return JobRunner(_store(root)).start()


def _root() -> str:
    path = runs_dir()
    path.mkdir(parents=True, exist_ok=True)
    return str(path.resolve())


def store():
    """The run store of the runs directory in use (one per directory, shared by sessions)."""
    return _store(_root())


def runner():
    """The job runner (with its polling thread) of the runs directory in use."""
    return _runner(_root())


def session_owner() -> str:
    """Who owns the runs and uploads made here: the signed-in user's e-mail (or subject id)
    when sign-in is configured, else a random id for this browser session."""
    user = signed_in_user()
    if user is not None:
        return user
    if "owner" not in st.session_state:
        st.session_state["owner"] = uuid.uuid4().hex[:12]
    return st.session_state["owner"]


def demo_mode() -> bool:
    """The hosted demo (``STUDIO_DEMO=1``): limits on, people only touch their own runs."""
    from core.limits import demo_enabled

    return demo_enabled()


def limits():
    """The limits in force (:func:`core.limits.current_limits`)."""
    from core.limits import current_limits

    return current_limits()


def limits_text() -> str:
    """The demo's limits as one line for a caption; empty outside the demo."""
    phrases = limits().describe()
    return ("This is a shared demo: " + "; ".join(phrases) + ".") if phrases else ""


@st.cache_data(show_spinner=False)
def device_label() -> str:
    """The training device in words, e.g. ``CPU (2 threads)``."""
    from core.train import describe_device

    try:
        return describe_device()
    except StudioError as exc:  # STUDIO_DEVICE names a device that is not there
        return f"unavailable ({exc})"


# ------------------------------------------------------------------ layout pieces
def sidebar() -> None:
    """The device, the training queue, and the runs and data directories, on every page."""
    with st.sidebar, guard("opening the runs directory",
                           "check that the runs directory exists and can be written, then reload the page"):
        runner()  # started with the first page shown, so runs queued before a restart get going
        st.markdown(f"**Device**  \n{device_label()}")
        st.markdown("**Runs train on**")
        st.text(executor_label())
        training_now()
        user = signed_in_user()
        if user is not None:
            st.markdown(f"**Signed in as**  \n{md_escape(user)}")
            if st.button("Sign out", icon=":material/logout:", key="logout"):
                st.logout()
        lim = limits()
        if lim.demo:  # a shared server does not show its directories to visitors
            shown = lim.describe()
            if shown:
                st.markdown("**Demo limits**  \n" + "  \n".join(f"- {p}" for p in shown))
            return
        st.markdown("**Runs are saved in**")
        st.code(str(runs_dir().resolve()), language=None, wrap_lines=True)
        st.markdown("**Datasets are read from**")
        st.code(str(data_dir().resolve()), language=None, wrap_lines=True)


@st.fragment(run_every=3)
def training_now() -> None:
    """The sidebar's queue line, redrawn every few seconds: the sidebar is drawn before the
    page, so a run queued by this very page (or finishing elsewhere) would otherwise show
    only after the next click."""
    from studio.labels import queue_text

    with guard("counting the runs in the queue"):
        line = queue_text(store().list_runs(status=list(ACTIVE)))
        if line:
            st.markdown(f"**Training now**  \n{line}")


def executor_label() -> str:
    """Where runs train: this machine, or the Ray cluster (with its address and size outside the demo)."""
    executor = runner().executor
    if getattr(executor, "name", None) != "ray":
        return "this machine (one worker process per run)"
    return "a Ray cluster" if demo_mode() else executor.describe()


def page_link(name: str, label: str, icon: str | None = None) -> None:
    """A link to another page of the studio."""
    st.page_link(PAGES[name], label=label, icon=icon)


@contextlib.contextmanager
def guard(doing: str, todo: str = "reload the page and try again; if it keeps happening, "
          "the server log has the details") -> Iterator[None]:
    """The error boundary: a :class:`StudioError` is shown as its own sentence, anything
    else as one sentence saying what failed and what to do; the traceback goes to the log.

    Streamlit's own control flow (``st.rerun``, ``st.stop``) derives from BaseException and
    passes through untouched.
    """
    try:
        yield
    except StudioError as exc:
        # Core's messages quote run, class and file names: shown as text, never as markup.
        st.error(md_escape(sentence(str(exc))), icon=":material/error:")
    except Exception:
        log.exception("unexpected error while %s", doing)
        st.error(md_escape(f"Something went wrong while {doing}; {todo}."), icon=":material/error:")


# ------------------------------------------------------------------ naming
def run_label(row: dict[str, Any]) -> str:
    """How a run is named in pickers and legends: its name (with model, dataset and size
    when the name does not say them) and when it was started."""
    name = row.get("name") or row.get("run_id")
    what = f"{row.get('model')} on {dataset_label(row.get('dataset'))}"
    if row.get("image_size"):
        what += f", {row['image_size']} px"
    label = name if (row.get("model") or "") in name else f"{name} ({what})"
    when = fmt_time(row.get("created"))
    return f"{label} · {when}" if when else label


def dataset_label(spec: Any) -> str:
    """A MedMNIST name as is; an imported folder by its folder name."""
    if not isinstance(spec, str):
        return "-"
    if "/" in spec or os.sep in spec:
        # Imports are kept as "<name>-<8 hex digits of their content hash>"; people named them <name>.
        return f"{re.sub(r'-[0-9a-f]{8}$', '', Path(spec).name)} (your images)"
    return spec


# ------------------------------------------------------------------ datasets
def medmnist_on_disk() -> dict[str, list[int]]:
    """MedMNIST name -> the image sizes whose ``.npz`` is in the data directory."""
    from core.data import medmnist_on_disk as on_disk

    return on_disk(data_dir())


def uploads_root(owner: str | None = None) -> Path:
    """Where imported image folders go: ``<data dir>/uploads/<owner>/``."""
    return uploads.uploads_root(data_dir(), owner)


def private_uploads() -> bool:
    """Whether each session sees only its own imported folders: in the hosted demo and
    whenever visitors sign in. A local studio without sign-in shares them, because a
    reloaded page is a new session and its uploads must stay usable."""
    return limits().private_uploads or auth_settings() is not None


def list_uploads(owner: str | None = None) -> list[Path]:
    """Imported image folders, newest first: this owner's only when uploads are private
    (:func:`private_uploads`), everyone's otherwise."""
    return uploads.list_uploads(data_dir(), owner, private_uploads())


def save_upload(filename: str, data: bytes, owner: str) -> Path:
    """Extract an uploaded zip of class folders into this session's upload folder.

    The folder is named after the zip and its content hash, so uploading the same zip
    again reuses it and two sessions never write into each other's folders. The demo's
    limits on upload size, number of imported folders and zip entries apply.

    Returns:
        The folder (ready for :func:`core.data.load_image_folder`).
    """
    from core.limits import check_upload_count, check_upload_size

    lim = limits()
    check_upload_size(len(data), Path(filename).name, lim)
    target = uploads.zip_upload_folder(uploads_root(owner), filename, data)
    if target.is_dir():
        return target
    check_upload_count(len(list_uploads(owner)), "image folders", lim)
    return uploads.extract_upload(data, target, max_entries=lim.max_zip_files)


def file_stamp(path: Path) -> str:
    """Changes whenever the file is rewritten (cache keys)."""
    try:
        st_ = path.stat()
        return f"{st_.st_mtime_ns}-{st_.st_size}"
    except OSError:
        return "-"


@st.cache_data(show_spinner=False, max_entries=16)
def _dataset_view(spec: str, size: int, root: str, stamp: str, per_class: int) -> dict[str, Any]:
    from core.data import load_dataset

    ds = load_dataset(spec, size=size, data_dir=root)
    train = ds.images["train"]
    labels = ds.labels["train"]
    samples: dict[str, list[np.ndarray]] = {}
    for k, name in enumerate(ds.class_names):
        if ds.task == "multi-label":
            idx = (labels[:, k] > 0.5).nonzero().flatten()[:per_class]
        else:
            idx = (labels == k).nonzero().flatten()[:per_class]
        samples[name] = [train[i].permute(1, 2, 0).squeeze(-1).numpy().copy() for i in idx.tolist()]
    report = ds.report
    return {
        "name": ds.name,
        "source": ds.source,
        "task": ds.task,
        "task_text": ds.describe_task(),
        "class_names": list(ds.class_names),
        "channels": ds.channels,
        "image_size": ds.image_size,
        "counts": ds.summary(),
        "split_sizes": {s: int(ds.images[s].shape[0]) for s in ds.splits},
        "samples": samples,
        "files_read": len(report.files_read),
        "skipped": report.skipped_frame(),
        "notes": list(report.notes),
    }


def dataset_view(spec: str, size: int, per_class: int = 6) -> dict[str, Any]:
    """What the pages show of a dataset (counts, a few samples per class, the import
    report), cached per dataset, size and file version; the whole tensors are not kept."""
    from core.data import list_medmnist, medmnist_filename

    root = data_dir()
    if spec in list_medmnist():
        stamp = file_stamp(root / medmnist_filename(spec, size))
    else:
        stamp = file_stamp(Path(spec))
    return _dataset_view(spec, int(size), str(root), stamp, per_class)


@st.cache_data(show_spinner=False, max_entries=64)
def dataset_facts(spec: str, size: int) -> dict[str, Any]:
    """Channels, classes, task and split sizes, without loading MedMNIST images."""
    from core.data import list_medmnist, medmnist_facts

    if spec in list_medmnist():
        facts = medmnist_facts(spec)
        return {"channels": facts.channels, "num_classes": facts.num_classes, "task": facts.task,
                "n_train": facts.n_samples["train"], "n_val": facts.n_samples["val"]}
    view = dataset_view(spec, size)
    return {"channels": view["channels"], "num_classes": len(view["class_names"]), "task": view["task"],
            "n_train": view["split_sizes"].get("train", 0), "n_val": view["split_sizes"].get("val", 0)}


# ------------------------------------------------------------------ time per epoch
@st.cache_data(show_spinner=False, max_entries=256)
def step_cost(model_name: str, image_size: int, channels: int, num_classes: int,
              batch_size: int, device: str) -> tuple[float, float]:
    """:func:`measure_train_step`, cached per (model, size, channels, classes, batch, device)."""
    return measure_train_step(model_name, image_size, channels, num_classes, batch_size, device)
