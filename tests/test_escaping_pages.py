"""Visitors' names are shown as text on every page and chart (issue 16, items 1 and 2).

A runs directory and an imported image folder are built once with hostile names: a run, a
class folder and the dataset folder named ``[Session expired - sign in again](https:evil.example)``
(a phishing link in Markdown), runs and tags named ``<b>x</b>`` and ``=1+1 x`` (a spreadsheet
formula), uploads named like the link and ``=2+2.png``. Each page is opened on it with
AppTest, and every string the browser would render as Markdown (bodies, labels, captions,
help texts, radio options; not the plain-text selectbox options, text inputs and table
cells) is rendered with a CommonMark + GitHub autolink parser: no element may hold a live
link, and the hostile text must still be readable. Chart specs must carry the names
HTML-escaped, and the pages' CSV downloads must carry them formula-guarded.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import socket
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from markdown_it import MarkdownIt
from PIL import Image
from streamlit.testing.v1 import AppTest

from helpers_runs import normalise, square_images, train

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")

EVIL_MD = "[Session expired - sign in again](https:evil.example)"
EVIL_HTML = "<b>x</b>"
EVIL_CLASS = "<b>x<b>"  # a folder name cannot hold the "/" of "</b>"
FORMULA_RUN = "=1+1 x"
FORMULA_FILE = "=2+2.png"

# What Streamlit's Markdown is: CommonMark with GitHub's autolinks, raw HTML not rendered.
MARKDOWN = MarkdownIt("gfm-like", {"html": False, "linkify": True})
LIVE_LINK = re.compile(r"(?<!\\)\]\(")
# Fields of element protos that the browser renders as Markdown (st.markdown/caption/alerts:
# body; widgets, metrics, expanders, tabs, page links, download buttons: label; help
# tooltips; progress text; image captions).
MARKDOWN_FIELDS = {"body", "label", "help", "text", "caption", "captions"}
PLAIN_PROTOS = {"Text", "Code"}  # st.text, st.code: shown as typed
RADIO_PROTOS = {"Radio"}  # its options are Markdown too


# ---------------------------------------------------------------------------- building the data
def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def write_hostile_folder(root: Path) -> Path:
    """train/val/test folders whose two classes are named EVIL_MD and EVIL_CLASS."""
    names = (EVIL_CLASS, EVIL_MD)
    for k, (split, n) in enumerate({"train": 32, "val": 12, "test": 12}.items()):
        images, labels, _ = square_images(n, seed=10 * k)
        for i, (img, y) in enumerate(zip(images, labels)):
            folder = root / split / names[int(y)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(folder / f"{split}_{i:03d}.png")
    return root


def hostile_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        images, labels, _ = square_images(24, seed=5)
        for i, (img, y) in enumerate(zip(images, labels)):
            zf.writestr(f"scans/{(EVIL_CLASS, EVIL_MD)[int(y)]}/{i}.png", _png(img[0].numpy()))
    return buf.getvalue()


def trained_run(store, folder: Path, name: str, class_names: list[str]):
    """A completed medvcnn run on ``folder`` (a best checkpoint, eval.json, epoch metrics)."""
    from core.evaluate import evaluate_predictions
    from core.models import create_model, model_info

    torch.manual_seed(0)
    model = create_model("medvcnn", 1, 2, 28)
    images, labels, _ = square_images(256, seed=0)
    train(model, images, labels, steps=20)
    config = {"dataset": str(folder), "model": "medvcnn", "image_size": 28, "recipe": "default", "epochs": 1,
              "batch_size": 32, "optimizer": "adam", "lr": 3e-3, "schedule": "none", "seed": 0,
              "augment": "none", "tta": False, "device": "cpu", "pretrained": False}
    run = store.create_run({"dataset": str(folder), "model": "medvcnn", "image_size": 28, "recipe": "default",
                            "seed": 0, "config": config}, name=name)
    evals = {}
    with torch.no_grad():
        for split, seed in (("val", 101), ("test", 202)):
            x, y, _ = square_images(64, seed=seed)
            probs = torch.softmax(model(normalise(x)), dim=1).numpy()
            evals[split] = evaluate_predictions(probs, y.numpy(), "binary", class_names)
    run.save_checkpoint("best", {
        "format": "studio-checkpoint-v1", "model_name": "medvcnn",
        "model_args": {"in_channels": 1, "num_classes": 2, "image_size": 28}, "state_dict": model.state_dict(),
        "class_names": class_names, "task": "binary", "mean": [0.5], "std": [0.5], "config": config,
        "temperature": 1.0,
    })
    run.write_eval(evals)
    for e in (1, 2):
        run.append_metrics({"kind": "epoch", "epoch": e, "step": 4 * e, "train_loss": 0.7 / e, "val_loss": 0.8 / e,
                            "val_acc": 0.6, "val_auc": 0.7})
    store.update_meta(run.id, status="completed", epochs_done=2, epoch=2, best_epoch=2, train_seconds=3.0,
                      params_count=model_info("medvcnn", 1, 2, 28).params, task="binary", class_names=class_names,
                      test_acc=evals["test"]["acc"], test_auc=evals["test"]["auc"])
    return run


def fabricated_run(store, folder: Path, name: str, class_names: list[str], status: str = "completed", **meta):
    from core.evaluate import evaluate_predictions

    run = store.create_run({"dataset": str(folder), "model": "resnet18", "image_size": 28, "seed": 1}, name=name)
    if status == "completed":
        rng = np.random.default_rng(1)
        labels = rng.integers(0, 2, 100)
        p1 = np.clip(labels * 0.6 + rng.uniform(0, 0.4, 100), 0, 1)
        ev = evaluate_predictions(np.stack([1 - p1, p1], axis=1), labels, "binary", class_names)
        run.write_eval({"val": ev, "test": ev})
        run.append_metrics({"kind": "epoch", "epoch": 1, "step": 3, "train_loss": 0.6, "val_loss": 0.7,
                            "val_acc": 0.7, "val_auc": 0.75})
        meta = {"epochs_done": 1, "test_acc": ev["acc"], "test_auc": ev["auc"], "task": "binary",
                "class_names": class_names, "train_seconds": 5.0, "params_count": 1000, **meta}
    store.update_meta(run.id, status=status, **meta)
    return run


@pytest.fixture(scope="session")
def hostile_studio(tmp_path_factory) -> dict:
    """Runs and an imported folder with hostile names (built once; the tests only read them)."""
    from core.data import load_dataset
    from core.runs import RunStore

    base = tmp_path_factory.mktemp("hostile")
    data = base / "data"
    folder = write_hostile_folder(data / "uploads" / "shared" / EVIL_MD)
    class_names = list(load_dataset(str(folder), size=28).class_names)
    store = RunStore(base / "runs")
    real = trained_run(store, folder, EVIL_MD, class_names)
    store.set_tags(real.id, [EVIL_HTML, FORMULA_RUN])
    formula = fabricated_run(store, folder, FORMULA_RUN, class_names)
    store.set_tags(formula.id, [EVIL_MD])
    # Training now (this test process stands in for its worker), and a failed run whose
    # error quotes a name.
    running = fabricated_run(store, folder, EVIL_HTML, class_names, status="running", pid=os.getpid(),
                             pid_created=psutil.Process().create_time(), host=socket.gethostname(), epoch=1,
                             epochs=3, progress=0.3)
    failed = fabricated_run(store, folder, EVIL_MD, class_names, status="failed",
                            error=f"the images of {EVIL_MD} could not be read; import them again")
    return {"runs": base / "runs", "data": data, "folder": folder, "real": real.id, "formula": formula.id,
            "running": running.id, "failed": failed.id, "classes": class_names}


@pytest.fixture(autouse=True)
def _stop_job_runner():
    """The pages start a job runner thread per runs directory; stop this test's at its end."""
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


@pytest.fixture
def studio(hostile_studio, monkeypatch):
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(hostile_studio["runs"]))
    monkeypatch.setenv("STUDIO_DATA_DIR", str(hostile_studio["data"]))
    return hostile_studio


@pytest.fixture
def downloads(monkeypatch):
    """The bytes behind every st.download_button of the AppTests in this test."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    storage = MemoryMediaFileStorage("/mock/media")
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", lambda prefix: storage)

    def read(button) -> bytes:
        file_id = button.proto.url.rsplit("/", 1)[-1].split(".", 1)[0]
        return storage.get_file(file_id).content

    return read


def open_page(name: str, session: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    if name != "home":
        at.switch_page(f"../pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------------- what the browser shows
def _strings(message, proto_name: str, out: list[tuple[str, str]]) -> None:
    """Every Markdown-rendered string in a proto message (recursively)."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in ([value] if hasattr(value, "ListFields") else value):
                _strings(item, type(item).__name__, out)
            continue
        if field.type != field.TYPE_STRING or proto_name in PLAIN_PROTOS:
            continue
        if field.name in MARKDOWN_FIELDS or (proto_name in RADIO_PROTOS and field.name == "options"):
            for text in ([value] if isinstance(value, str) else value):
                out.append((f"{proto_name}.{field.name}", text))


def rendered_markdown(at: AppTest) -> list[tuple[str, str]]:
    """(where, source) of every string the page renders as Markdown, sidebar included."""
    out: list[tuple[str, str]] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "ListFields"):
            _strings(proto, type(proto).__name__, out)
        children = getattr(node, "children", {})
        for child in (children.values() if isinstance(children, dict) else children):
            walk(child)

    walk(at._tree)
    return out


def visible_text(source: str) -> str:
    """What a reader sees of a Markdown string: the rendered text, tags removed."""
    return html.unescape(re.sub(r"<[^>]+>", "", MARKDOWN.render(source))).strip()


def assert_no_live_markup(at: AppTest, must_show: tuple[str, ...] = (EVIL_MD,)) -> list[tuple[str, str]]:
    """No Markdown element holds a link or an image; each of ``must_show`` is readable in one."""
    shown = rendered_markdown(at)
    assert shown, "the page rendered nothing"
    for where, source in shown:
        assert not LIVE_LINK.search(source), f"{where} holds a live link: {source!r}"
        out = MARKDOWN.render(source)
        assert "<a " not in out and "<img" not in out, f"{where} renders markup: {source!r} -> {out!r}"
    seen = "\n".join(visible_text(source) for _, source in shown)
    for text in must_show:
        assert text in seen, f"{text!r} is not readable anywhere on the page"
    return shown


def chart_strings(at: AppTest) -> list[str]:
    """Every string in the page's plotly figures (names, labels, titles, hover texts)."""
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for chart in at.get("plotly_chart"):
        walk(json.loads(chart.proto.spec))
    return found


def assert_charts_escaped(at: AppTest, hostile: tuple[str, ...]) -> None:
    strings = chart_strings(at)
    assert strings, "the page drew no chart"
    for raw in hostile:
        assert not any(raw in s for s in strings), f"a chart carries {raw!r} as HTML"
    assert any(html.escape(hostile[0], quote=False) in s for s in strings), "the name is not shown in any chart"


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


# ---------------------------------------------------------------------------- the pages
def test_home_shows_hostile_run_names_as_text(studio):
    at = open_page("home")
    assert_no_live_markup(at)
    assert EVIL_MD in at.dataframe[0].value["Run"].tolist(), "the recent-runs table shows the name as typed"


def test_datasets_shows_hostile_class_names_as_text():
    at = open_page("datasets")
    uploader = next(u for u in at.file_uploader if u.proto.label.startswith("Your images as a .zip"))
    uploader.set_value((f"{EVIL_MD}.zip", hostile_zip(), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    shown = assert_no_live_markup(at, must_show=(EVIL_MD, EVIL_CLASS))
    assert any(where == "Markdown.body" and visible_text(s) == EVIL_MD for where, s in shown), \
        "the class's sample row is labelled with the class name, as text"
    assert_charts_escaped(at, (EVIL_CLASS,))


def test_train_shows_hostile_run_names_and_errors_as_text(studio):
    at = open_page("train", session={"my_runs": [studio["failed"]]})
    assert_no_live_markup(at, must_show=(EVIL_MD, EVIL_HTML))
    errors = [visible_text(e.value) for e in at.error]
    assert f"The images of {EVIL_MD} could not be read; import them again." in errors


def test_compare_shows_hostile_names_as_text_and_guards_its_csv(studio, downloads):
    at = open_page("compare")
    assert_no_live_markup(at, must_show=(EVIL_MD,))
    assert_charts_escaped(at, (EVIL_CLASS,))
    board = at.dataframe[0].value
    assert {EVIL_MD, FORMULA_RUN} <= set(board["Run"]), "table cells show the names as typed"

    button = next(b for b in at.get("download_button") if b.proto.label == "Download the table as CSV")
    rows = csv_rows(downloads(button))
    header, body = rows[0], rows[1:]
    run_col, tags_col = header.index("Run"), header.index("Tags")
    runs = [r[run_col] for r in body]
    assert "'" + FORMULA_RUN in runs and FORMULA_RUN not in runs, "the formula is guarded by an apostrophe"
    assert EVIL_MD in runs, "other names are written as they are"
    tags = {r[run_col]: r[tags_col] for r in body}
    assert tags[EVIL_MD] == f"{EVIL_HTML}, {FORMULA_RUN}"
    assert not [cell for row in body for cell in row if cell[:1] in tuple("=+-@") and not _is_number(cell)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def test_compare_chart_legends_escape_run_names(studio):
    at = open_page("compare")
    strings = chart_strings(at)
    assert not any(EVIL_HTML in s for s in strings)
    assert any("&lt;b&gt;x&lt;b&gt;" in s for s in strings), "class names on the confusion matrices"
    assert any(EVIL_MD in s for s in strings), "Markdown means nothing to plotly: the link text is shown as is"


def test_classify_shows_hostile_names_as_text_and_guards_its_csv(studio, downloads):
    at = open_page("classify")
    image = _png(square_images(2, seed=3)[0][1][0].numpy())
    at.file_uploader[0].set_value([(f"{EVIL_MD}.png", image, "image/png"),
                                   (FORMULA_FILE, image, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert_no_live_markup(at, must_show=(f"{EVIL_MD}.png", FORMULA_FILE))
    assert_charts_escaped(at, (EVIL_CLASS,))
    answers = [visible_text(m.value) for m in at.markdown if m.value.startswith("### ")]
    assert len(answers) == 2 and set(answers) <= set(studio["classes"]), "the answer is the class name, as text"

    button = next(b for b in at.get("download_button") if b.proto.label == "Download the results as CSV")
    rows = csv_rows(downloads(button))
    header, body = rows[0], rows[1:]
    files = [r[header.index("file")] for r in body]
    assert files == [f"{EVIL_MD}.png", "'" + FORMULA_FILE]
    assert f"p({EVIL_MD})" in header


# ---------------------------------------------------------------------------- the chart builders
def test_chart_builders_escape_every_label():
    import pandas as pd

    from studio import charts

    fig = charts.probability_bars([EVIL_HTML, "ok"], [0.7, 0.3], title=EVIL_HTML)
    assert list(fig.data[0].y) == ["&lt;b&gt;x&lt;/b&gt;", "ok"] and fig.layout.title.text == "&lt;b&gt;x&lt;/b&gt;"
    fig = charts.confusion_heatmap([[1, 0], [0, 1]], [EVIL_CLASS, "a&b"], EVIL_HTML)
    assert list(fig.data[0].x) == ["&lt;b&gt;x&lt;b&gt;", "a&amp;b"] and fig.layout.title.text == "&lt;b&gt;x&lt;/b&gt;"
    fig = charts.roc_chart([{"label": EVIL_HTML, "fpr": [0, 1], "tpr": [0, 1], "auc": 0.5}])
    assert fig.data[1].name == "&lt;b&gt;x&lt;/b&gt; (AUC 0.500)"
    fig = charts.overlaid_curves({'<a href="https://evil.example">x</a>': [{"epoch": 1, "val_auc": 0.5}]},
                                 "val_auc", "AUC")
    assert fig.data[0].name == '&lt;a href="https://evil.example"&gt;x&lt;/a&gt;'
    fig = charts.per_class_f1(pd.DataFrame({"run": [EVIL_HTML], "class": [EVIL_CLASS], "f1": [0.5]}))
    assert fig.data[0].name == "&lt;b&gt;x&lt;/b&gt;" and list(fig.data[0].x) == ["&lt;b&gt;x&lt;b&gt;"]
    runs = pd.DataFrame({"run": [EVIL_HTML, "plain"], "model": ["m", "m"], "acc": [0.5, 0.6], "params": [1, 2]})
    fig = charts.scatter_runs(runs, "params", "acc", "parameters", "accuracy", highlight=[EVIL_HTML])
    assert list(fig.data[0].hovertext) == ["&lt;b&gt;x&lt;/b&gt;", "plain"]
    assert [t.name for t in fig.data] == ["m", "selected"] and list(fig.data[1].x) == [1], "the pick is still ringed"
    counts = pd.DataFrame({"split": ["train"], "class": [EVIL_CLASS], "count": [3]})
    assert list(charts.class_balance(counts).data[0].x) == ["&lt;b&gt;x&lt;b&gt;"]
    report = {"before": {"ece": 0.1, "confidence": [0.5], "accuracy": [0.5], "count": [2]}, "after": None,
              "temperature": 1.0}
    assert charts.reliability_chart(report, EVIL_HTML).layout.title.text == "&lt;b&gt;x&lt;/b&gt;"


def test_md_escape_leaves_no_markup_and_keeps_the_text():
    from studio.safe_text import md_escape

    hostile = [EVIL_MD, EVIL_HTML, "![x](https://evil.example/a.png)", "https://evil.example/login",
               "www.evil.example", "admin@evil.example", "<https://evil.example>", "**bold** _it_ `code` ~~s~~",
               "$x^2$", "# heading", "1. item", "- item", "> quote", "a | b", "line\nbreak [x](y)", "\\[x](y)",
               ":red[x]"]
    for text in hostile:
        out = MARKDOWN.render(md_escape(text))
        assert "<a " not in out and "<img" not in out and "<strong>" not in out and "<em>" not in out, (text, out)
        assert "<h1>" not in out and "<ol>" not in out and "<ul>" not in out and "<blockquote>" not in out
        assert "<code>" not in out and "<s>" not in out and "<table>" not in out
        assert visible_text(md_escape(text)).strip() == " ".join(text.split()), text
    # Ordinary names and messages read the same in the page's source (and in tests).
    for text in ("bloodmnist_64.npz is missing", "scan 3.5 mm (left).png", "normal, benign"):
        assert md_escape(text) == text
