"""What the pages share: the cached run store and job runner, the sidebar, the error
boundary, dataset look-ups, the epoch-time estimate and number formatting.

Only thread-safe shared objects go into ``st.cache_resource`` (the run store, the job
runner, a loaded model); data and tables go into ``st.cache_data``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import streamlit as st

from core.errors import StudioError
from core.paths import data_dir, runs_dir
from studio.safe_text import md_escape

log = logging.getLogger("studio")

# Page files, relative to studio/app.py (st.Page and st.page_link resolve them from there).
PAGES = {
    "home": "../pages/home.py",
    "datasets": "../pages/datasets.py",
    "train": "../pages/train.py",
    "compare": "../pages/compare.py",
    "classify": "../pages/classify.py",
}

STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "interrupted": "Interrupted",
    "unknown": "Unknown",
}
# Material icons (Streamlit ships the font, so they show in every browser) for markdown.
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "completed": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/warning:",
    "unknown": ":material/help:",
}
ACTIVE = ("queued", "running")

UPLOADS = "uploads"  # sub-folder of the data dir that holds imported image folders


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


# ------------------------------------------------------------------ sign-in (optional)
def auth_settings() -> dict[str, Any] | None:
    """The ``[auth]`` section of the operator's secrets.toml, or None when there is none
    (then the studio has no sign-in at all)."""
    try:
        if not st.secrets.load_if_toml_exists() or "auth" not in st.secrets:
            return None
        section = st.secrets["auth"]
        return dict(section) if hasattr(section, "keys") else None
    except Exception:  # an unreadable secrets file means no sign-in, not a broken page
        log.exception("could not read the [auth] secrets; sign-in is off")
        return None


def sign_in_providers(auth: dict[str, Any]) -> list[str | None]:
    """None for a single provider set directly under ``[auth]``, else the names of the
    ``[auth.<name>]`` sub-sections (each gets its own button)."""
    if "client_id" in auth:
        return [None]
    return [name for name, value in auth.items() if hasattr(value, "keys")]


def signed_in_user() -> str | None:
    """The signed-in person's e-mail (or OIDC subject), when sign-in is configured."""
    if auth_settings() is None:
        return None
    info = st.user.to_dict()
    if not info.get("is_logged_in"):
        return None
    ident = info.get("email") or info.get("sub")
    return str(ident) if ident else None


def require_sign_in() -> None:
    """When the operator configured ``[auth]``, show a sign-in screen and stop until the
    visitor has signed in; otherwise do nothing."""
    auth = auth_settings()
    if auth is None or signed_in_user() is not None:
        return
    st.title("Medical Image Classification Studio")
    st.write("Sign in to train and use models. Your runs and imported images are kept under your account.")
    for provider in sign_in_providers(auth) or [None]:
        label = f"Sign in with {provider.title()}" if provider else "Sign in"
        if st.button(label, type="primary", icon=":material/login:", key=f"login-{provider}"):
            try:
                if provider:
                    st.login(provider)
                else:
                    st.login()
            except Exception as exc:  # missing Authlib, a typo in secrets.toml
                log.exception("sign-in failed")
                st.error(f"Sign-in is set up but could not start ({md_escape(plain(exc))}); "
                         "the operator should check the [auth] settings and install streamlit[auth].",
                         icon=":material/error:")
    st.stop()


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


def plain(message: Any) -> str:
    """A message without Python object reprs (``<_io.BytesIO object at 0x...>``), which
    some decoders put into their errors and mean nothing to a person."""
    text = " ".join(str(message).split())
    text = re.sub(r"cannot identify image file <[^<>]*>", "unknown or damaged image format", text)
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", text)


def sentence(message: str) -> str:
    """A core message as a sentence: capital first letter (unless it starts with a file
    name or an id), full stop at the end."""
    text = plain(message)
    if not text:
        return "Something went wrong."
    first = text.split(" ", 1)[0]
    if first[:1].islower() and not re.search(r"[._/\\\d'-]", first):
        text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    return text


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


# ------------------------------------------------------------------ formatting
def fmt_duration(seconds: float | None) -> str:
    """``under 1 s``, ``45 s``, ``3 min 20 s``, ``1 h 5 min``; ``-`` when unknown."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    if seconds < 0.5:
        return "under 1 s"
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_estimate(seconds: float | None) -> str:
    """An estimate in words: ``about 45 s``, ``under 1 s``, ``-`` when unknown."""
    text = fmt_duration(seconds)
    return text if text in ("-", "under 1 s") else f"about {text}"


def fmt_count(n: int | float | None) -> str:
    """``532``, ``54.2 k``, ``11.2 M``."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e4:
        return f"{n / 1e3:.1f} k"
    return f"{int(n):,}"


def fmt_metric(value: Any, digits: int = 3) -> str:
    """A score such as ``0.874``; ``-`` when missing or undefined."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status or "unknown", str(status))


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


def default_run_name(model: str, dataset: str, size: int) -> str:
    """What a run is called when the person gives no name."""
    return f"{model} on {dataset_label(dataset)}, {size} px"


def fmt_time(iso: Any) -> str:
    """``23 Nov 20:06`` (UTC, as the run store writes it) from an ISO time stamp."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).strftime("%d %b %H:%M")
    except ValueError:
        return ""


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
    from core.data import MEDMNIST_SIZES, list_medmnist, medmnist_filename

    root = data_dir()
    found = {}
    for flag in list_medmnist():
        sizes = [s for s in MEDMNIST_SIZES if (root / medmnist_filename(flag, s)).is_file()]
        if sizes:
            found[flag] = sizes
    return found


def owner_folder(owner: str) -> str:
    """A folder name for an owner: the id itself when it is plain, else a slug and a hash
    (an e-mail address never becomes a path with dots or slashes in it)."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", owner):
        return owner
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", owner).strip("-_")[:40] or "user"
    return f"{slug}-{hashlib.sha256(owner.encode()).hexdigest()[:10]}"


def uploads_root(owner: str | None = None) -> Path:
    """Where imported image folders go: ``<data dir>/uploads/<owner>/``."""
    root = data_dir() / UPLOADS
    return root / owner_folder(owner) if owner else root


def private_uploads() -> bool:
    """Whether each session sees only its own imported folders: in the hosted demo and
    whenever visitors sign in. A local studio without sign-in shares them, because a
    reloaded page is a new session and its uploads must stay usable."""
    return limits().private_uploads or auth_settings() is not None


def list_uploads(owner: str | None = None) -> list[Path]:
    """Imported image folders, newest first: this owner's only when uploads are private
    (:func:`private_uploads`), everyone's otherwise."""
    private = private_uploads()
    if private and not owner:
        return []
    root = uploads_root(owner if private else None)
    if not root.is_dir():
        return []
    pattern = "*" if private else "*/*"
    found = [p for p in root.glob(pattern) if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def save_upload(filename: str, data: bytes, owner: str) -> Path:
    """Extract an uploaded zip of class folders into this session's upload folder.

    The folder is named after the zip and its content hash, so uploading the same zip
    again reuses it and two sessions never write into each other's folders. The demo's
    limits on upload size, number of imported folders and zip entries apply.

    Returns:
        The folder (ready for :func:`core.data.load_image_folder`).
    """
    from core.data import extract_zip
    from core.limits import check_upload_size

    lim = limits()
    check_upload_size(len(data), Path(filename).name, lim)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-_")[:40] or "images"
    digest = hashlib.sha256(data).hexdigest()[:8]
    target = uploads_root(owner) / f"{stem}-{digest}"
    if target.is_dir():
        return target
    if lim.max_uploads is not None and len(list_uploads(owner)) >= lim.max_uploads:
        raise StudioError(
            f"you have imported {lim.max_uploads} image folders, the most this demo keeps per visitor; "
            "train on one of them instead"
        )
    staging = target.with_name(f".extracting-{target.name}-{uuid.uuid4().hex[:6]}")
    try:
        extract_zip(data, staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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
    from core.data import list_medmnist

    if spec in list_medmnist():
        import medmnist

        info = medmnist.INFO[spec]
        return {"channels": int(info["n_channels"]), "num_classes": len(info["label"]),
                "task": info["task"], "n_train": int(info["n_samples"]["train"]),
                "n_val": int(info["n_samples"]["val"])}
    view = dataset_view(spec, size)
    return {"channels": view["channels"], "num_classes": len(view["class_names"]), "task": view["task"],
            "n_train": view["split_sizes"].get("train", 0), "n_val": view["split_sizes"].get("val", 0)}


# ------------------------------------------------------------------ time per epoch
HEAVY_STEP_S = 1.0  # a probe step slower than this skips the second, larger probe
def measure_train_step(model_name: str, image_size: int, channels: int, num_classes: int,
                       batch_size: int, device: str = "cpu") -> tuple[float, float]:
    """Time training steps of a model on random data: seconds per step = a + b * images.

    A step has a fixed cost (launching every layer, synchronising threads; large on a busy
    CPU) and a cost per image, so the model is timed at two batch sizes and the line
    through them is extrapolated to the real batch. The larger probe batch shrinks with the
    image size, and is skipped at 128 px and more when the small one is already slow, so
    even VGG-16 at 224 px on a CPU costs only a few steps.

    Returns:
        ``(a, b)``: fixed seconds per step and seconds per image (both >= 0).
    """
    import torch

    from core.models import create_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(model_name, channels, num_classes, image_size).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def timed(n: int, repeats: int) -> float:
        x = torch.randn(n, channels, image_size, image_size, device=dev)
        y = torch.randint(0, num_classes, (n,), device=dev)
        times = []
        for _ in range(repeats + 1):  # the first step of a shape warms up and is not counted
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
        return float(np.mean(times[1:]))

    large = min(batch_size, {28: 64, 64: 32, 128: 16}.get(image_size, 8))
    small = min(large, 2)
    t_small = timed(small, 1)
    if small == large or (image_size >= 128 and t_small > HEAVY_STEP_S):
        # Large images and an already slow step: the per-image cost dominates, and a second
        # probe would keep the page waiting.
        return 0.0, t_small / small
    t_large = timed(large, 1)
    per_image = max((t_large - t_small) / (large - small), 0.0)
    fixed = max(t_small - per_image * small, 0.0)
    if per_image == 0.0:  # noise swamped the difference: charge it all per image
        per_image, fixed = t_large / large, 0.0
    return fixed, per_image


@st.cache_data(show_spinner=False, max_entries=256)
def step_cost(model_name: str, image_size: int, channels: int, num_classes: int,
              batch_size: int, device: str) -> tuple[float, float]:
    """:func:`measure_train_step`, cached per (model, size, channels, classes, batch, device)."""
    return measure_train_step(model_name, image_size, channels, num_classes, batch_size, device)


def epoch_seconds(cost: tuple[float, float], batch_size: int, n_train: int, n_val: int) -> float:
    """Training steps at the measured cost, plus validation (a forward pass: about a
    third of a training step, in batches of 512)."""
    fixed, per_image = cost
    train = math.ceil(n_train / max(1, batch_size)) * (fixed + per_image * batch_size)
    val = (math.ceil(n_val / 512) * fixed + per_image * n_val) / 3.0
    return train + val
