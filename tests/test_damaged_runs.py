"""One bad file never hides the others. Each test builds hostile run files itself: numbers too
large for SQLite or a float and JSON nested 200,000 deep in meta.json / eval.json, a best.pt
without the keys a model is rebuilt from, a metrics line whose epoch is a word, a run id
with a trailing newline. The listing (store, index, `python -m core runs`), `eval` and
`predict` of a healthy run, and the Home, Train, Compare and Classify pages keep working;
the damaged runs are listed as damaged with the reason."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.errors import StudioError
from core.runs import RunIndex, RunStore, validate_run_id
from core.runs.index import build_row
from core.runs.safe_json import DamagedJSON, loads_checked
from helpers_runs import make_run, write_dataset_folder

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")
HUGE_INT = str(10**30)          # beyond SQLite's 64-bit INTEGER
HUGE_FLOAT = "1" + "0" * 400    # 10**400 as raw JSON text: beyond a float
DEEP = "[" * 200_000 + "]" * 200_000
EPOCH = {"kind": "epoch", "step": 8, "train_loss": 0.5, "val_loss": 0.4, "val_acc": 0.8, "val_auc": 0.9, "lr": 1e-3}


def _with_raw(path: Path, key_path: tuple[str, ...], raw: str) -> None:
    """Rewrite a JSON file with ``raw`` (text json.dumps would never write) at ``key_path``."""
    obj = json.loads(path.read_text())
    inner = obj
    for key in key_path[:-1]:
        inner = inner[key]
    inner[key_path[-1]] = "@@RAW@@"
    path.write_text(json.dumps(obj, indent=2).replace('"@@RAW@@"', raw))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A runs directory with a healthy run and six damaged ones (oldest first, so the
    run with the damaged checkpoint is the newest and the one Classify offers first)."""
    base = tmp_path_factory.mktemp("damaged")
    folder = write_dataset_folder(base / "squares", {"train": 32, "val": 16, "test": 16})
    root = base / "runs"
    names = ["healthy", "huge int meta", "huge float eval", "deep meta", "deep eval", "epoch two", "bad checkpoint"]
    healthy = make_run(root, dataset=str(folder), steps=20)
    store = RunStore(root)
    store.rename(healthy.id, "healthy")
    ids = {"healthy": healthy.id}
    copied = ("status", "epochs_done", "best_epoch", "train_seconds", "params_count", "task", "class_names",
              "test_acc", "test_auc")
    for name in names[1:]:  # copies of the trained run (training each would only cost time)
        run = store.create_run(healthy.params(), name=name)
        shutil.copytree(healthy.checkpoint_dir, run.checkpoint_dir)
        shutil.copy(healthy.eval_path, run.eval_path)
        store.update_meta(run.id, **{k: v for k, v in healthy.meta().items() if k in copied})
        ids[name] = run.id
    for run_id in ids.values():
        store.get(run_id).append_metrics({**EPOCH, "epoch": 1})
    run_dir = {name: root / run_id for name, run_id in ids.items()}
    _with_raw(run_dir["huge int meta"] / "meta.json", ("epochs_done",), HUGE_INT)
    _with_raw(run_dir["huge float eval"] / "eval.json", ("test", "acc"), HUGE_FLOAT)
    _with_raw(run_dir["deep meta"] / "meta.json", ("notes",), DEEP)
    _with_raw(run_dir["deep eval"] / "eval.json", ("test", "macro"), DEEP)
    with open(run_dir["epoch two"] / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({**EPOCH, "epoch": "two"}) + "\n")
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, run_dir["bad checkpoint"] / "checkpoints" / "best.pt")
    ids["folder"] = str(folder)
    return root, ids


@pytest.fixture
def damaged(template, tmp_path, monkeypatch) -> tuple[RunStore, dict[str, str]]:
    """A fresh copy of the template as this test's runs directory, without its index (so the
    first listing rebuilds it from every run's files, the path that failed as a whole)."""
    src, ids = template
    root = tmp_path / "runs"
    shutil.copytree(src, root)
    for p in root.glob("index.sqlite*"):
        p.unlink()
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    return RunStore(root), ids


DAMAGE = {  # run name: (status listed, what the reason says)
    "huge int meta": ("unknown", f"meta.json of run '{{id}}' holds the number {HUGE_INT[:12]}...{HUGE_INT[-6:]} "
                                 "(31 characters), too large to store (the limit is 2**63); fix or delete "),
    "huge float eval": ("completed", "eval.json of run '{id}' holds the number 100000000000...000000 (401 characters), "
                                     "too large to store (the limit is 2**63); fix or delete "),
    "deep meta": ("unknown", "meta.json of run '{id}' holds values nested more than 64 levels deep; fix or delete "),
    "deep eval": ("completed", "eval.json of run '{id}' holds values nested more than 64 levels deep; fix or delete "),
}


def test_store_lists_every_run_and_says_which_are_damaged(damaged):
    store, ids = damaged
    rows = {r["name"] if r["damaged"] is None or r["status"] != "unknown" else r["run_id"]: r
            for r in store.list_runs()}
    assert len(store.list_runs()) == 7
    assert rows["healthy"]["damaged"] is None and rows["healthy"]["error"] is None
    assert rows["healthy"]["test_acc"] == pytest.approx(store.get(ids["healthy"]).eval()["test"]["acc"])
    for name, (status, reason) in DAMAGE.items():
        row = next(r for r in store.list_runs() if r["run_id"] == ids[name])
        assert row["status"] == status, name
        assert row["damaged"].startswith(reason.format(id=ids[name])), row["damaged"]
        assert row["error"].startswith(reason.format(id=ids[name]))
        assert row["model"] == "medvcnn"  # what could be read is still listed
    # the runs whose damage is in files the index does not read are listed as usual
    for name in ("epoch two", "bad checkpoint"):
        row = next(r for r in store.list_runs() if r["run_id"] == ids[name])
        assert (row["status"], row["damaged"], row["name"]) == ("completed", None, name)
    # a store reopened on the same directory (a restarted server) lists the same rows
    (store.root / "index.sqlite").unlink()
    assert RunStore(store.root).list_runs() == store.list_runs()


def test_cli_runs_lists_damaged_runs_with_the_reason_and_the_rest_as_usual(damaged, capsys):
    store, ids = damaged
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if not line.startswith("damaged run")}
    assert table == {ids["healthy"]: "completed", ids["huge int meta"]: "damaged", ids["huge float eval"]: "damaged",
                     ids["deep meta"]: "damaged", ids["deep eval"]: "damaged", ids["epoch two"]: "completed",
                     ids["bad checkpoint"]: "completed"}
    notes = [line for line in out.splitlines() if line.startswith("damaged run")]
    assert len(notes) == 4
    for name, (_, reason) in DAMAGE.items():
        assert f"damaged run {ids[name]}: {reason.format(id=ids[name])}" in out


def test_cli_eval_and_predict_of_a_healthy_run_work_beside_damaged_ones(damaged, capsys, tmp_path):
    store, ids = damaged
    assert main(["eval", ids["healthy"]]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ test: ACC \d\.\d{4}  AUC ", out, re.M), out
    images = Path(ids["folder"]) / "test"
    assert main(["predict", ids["healthy"], str(images), "--out", str(tmp_path / "out")]) == 0
    assert "16 images, 0 failed" in capsys.readouterr().out


def test_a_damaged_checkpoint_is_refused_for_that_run_only(damaged, capsys, tmp_path):
    from core.inference import load_run_model

    store, ids = damaged
    bad = ids["bad checkpoint"]
    message = (f"the best checkpoint of run '{bad}' is a damaged checkpoint: it has no 'model_name', 'model_args', "
               "'class_names', 'task', 'mean', 'std'; train or resume the run again to write a new one, or pick "
               "another run")
    with pytest.raises(StudioError) as err:
        load_run_model(store.get(bad))
    assert str(err.value) == message
    for argv in (["eval", bad], ["predict", bad, str(Path(ids["folder"]) / "test"), "--out", str(tmp_path / "o")]):
        assert main(argv) == 2
        out, errors = capsys.readouterr()
        assert errors == f"error: {message}\n" and "Traceback" not in out + errors
    # weights that do not fit the architecture are damage too, not a RuntimeError
    ckpt = store.get(ids["healthy"]).load_checkpoint("best")
    ckpt["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in ckpt["state_dict"].items()}
    store.get(ids["epoch two"]).save_checkpoint("best", ckpt)
    with pytest.raises(StudioError, match=rf"^the best checkpoint of run '{ids['epoch two']}' is a damaged "
                                          r"checkpoint: its weights do not fit a medvcnn model \(Error\(s\) in "
                                          r"loading state_dict for .*\); train or resume"):
        load_run_model(store.get(ids["epoch two"]))
    assert load_run_model(store.get(ids["healthy"])).class_names == ["absent", "present"]


@pytest.mark.parametrize("change, why", [
    ({"class_names": ["only one"]}, "it names 1 classes for a model of 2"),
    ({"model_args": {"in_channels": 1, "num_classes": "2", "image_size": 28}},
     "its model_args lack a whole number for 'num_classes'"),
    ({"mean": "0.5"}, "its 'mean' is a str"),
    ({"state_dict": {"w": [1.0]}}, "its weights (state_dict) are not all named tensors"),
])
def test_checkpoint_fields_of_the_wrong_kind_are_named(damaged, change, why):
    from core.checkpoint import check_model_checkpoint

    store, ids = damaged
    ckpt = {**store.get(ids["healthy"]).load_checkpoint("best"), **change}
    with pytest.raises(StudioError, match=re.escape(f"X is a damaged checkpoint: {why}; ")):
        check_model_checkpoint(ckpt, "X")


def test_a_metrics_line_with_a_word_for_its_epoch_is_skipped(damaged, caplog):
    from core.runs.store import last_completed_epoch

    store, ids = damaged
    run = store.get(ids["epoch two"])
    assert [r["epoch"] for r in run.metrics(kind="epoch")] == [1]
    assert "line 2: 'epoch' is 'two', not a whole number; skipped" in caplog.text
    assert last_completed_epoch(run) == 1
    # lines nested too deep or holding huge numbers are skipped the same way, not raised
    with open(run.metrics_path, "a") as fh:
        fh.write('{"kind": "epoch", "epoch": 3, "x": ' + DEEP + "}\n")
        fh.write('{"kind": "epoch", "epoch": 4, "val_auc": ' + HUGE_FLOAT + "}\n")
        fh.write('{"kind": "epoch", "epoch": 5, "val_loss": "low"}\n')
        fh.write('{"kind": "epoch", "epoch": 6, "val_loss": 0.3}\n')
    assert [r["epoch"] for r in run.metrics(kind="epoch")] == [1, 6]


def test_a_run_id_with_a_trailing_newline_is_refused(damaged, capsys):
    store, ids = damaged
    good = ids["healthy"]
    assert validate_run_id(good) == good
    for hostile in (good + "\n", good + "\r\n", "\n" + good, good + "\x00"):
        with pytest.raises(StudioError, match="is not a run id"):
            validate_run_id(hostile)
        with pytest.raises(StudioError, match="is not a run id"):
            store.get(hostile)
    assert main(["eval", good + "\n"]) == 2
    assert "is not a run id" in capsys.readouterr().err


def test_the_index_never_hands_sqlite_a_number_it_cannot_store(tmp_path):
    row = build_row("r1", {"model": "m", "seed": 10**30, "image_size": 2**63},
                    {"status": "completed", "epochs_done": 10**30, "train_seconds": 10**400, "params_count": -2**63},
                    {"test": {"acc": 10**400, "auc": float("inf")}})
    assert (row["seed"], row["image_size"], row["epochs_done"], row["train_seconds"], row["test_acc"]) == (None,) * 5
    assert row["params_count"] == -2**63 and row["test_auc"] == float("inf")
    index = RunIndex(tmp_path / "index.sqlite", source=lambda: [row])
    assert index.get("r1")["status"] == "completed"  # built from the source without an OverflowError


def test_loads_checked_keeps_what_the_studio_writes():
    assert loads_checked('{"a": [1, 2.5, NaN, Infinity, -9223372036854775808], "b": {"c": null}}')["a"][4] == -2**63
    for text in ("9223372036854775808", "1e400", "-1e400", "[" * 65 + "]" * 65, DEEP):
        with pytest.raises(DamagedJSON):
            loads_checked(text)
    assert loads_checked("[" * 64 + "]" * 64) is not None


# ---------------------------------------------------------------------------- pages
def _open(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page != "home":
        at.switch_page(f"../pages/{page}.py").run()
    return at


def _shown(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.error])


@pytest.fixture
def stop_runner():
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


@pytest.mark.parametrize("page", ["home", "train", "compare", "classify"])
def test_pages_work_beside_damaged_runs(damaged, stop_runner, page):
    store, ids = damaged
    at = _open(page)
    assert not at.exception, [e.value for e in at.exception]
    shown = _shown(at)
    assert "Traceback" not in shown and "Something went wrong" not in shown, shown
    if page in ("home", "compare"):
        board = at.dataframe[0].value
        assert "healthy" in set(board["Run"]) and len(board) == 7
        status = dict(zip(board["Run"], board["Status"]))
        assert status["healthy"] == status["epoch two"] == status["bad checkpoint"] == "Completed"
        assert sorted(board["Status"]).count("Damaged") == len(DAMAGE)  # the damaged meta.json runs have no name
    if page == "compare":
        problems = dict(zip(board["Run id"], board["Problem"]))
        assert problems[ids["healthy"]] == ""
        for name, (_, reason) in DAMAGE.items():
            assert problems[ids[name]].startswith(reason.format(id=ids[name]))
        # the heatmaps of the picked runs: the damaged checkpoint is said for that run only
        assert [e.value for e in at.error] == [
            f"The best checkpoint of run '{ids['bad checkpoint']}' is a damaged checkpoint: it has no 'model_name', "
            "'model_args', 'class_names', 'task', 'mean', 'std'; train or resume the run again to write a new one, "
            "or pick another run."]
    if page == "train":
        assert not at.error, [e.value for e in at.error]
    if page == "classify":
        labels = [str(o) for o in at.selectbox[0].options]
        assert any(label.startswith("healthy") for label in labels), labels


def test_compare_shows_curves_and_scores_of_the_runs_picked_beside_damaged_ones(damaged, stop_runner):
    store, ids = damaged
    at = _open("compare")
    picked = next(m for m in at.multiselect if m.label == "Runs to compare")
    picked.set_value([ids["healthy"], ids["epoch two"], ids["deep eval"], ids["huge float eval"]]).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = _shown(at)
    assert "Something went wrong" not in shown and "Traceback" not in shown, shown
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    [auc] = [c for c in curves if "Validation AUC per epoch" in json.dumps(c.get("layout", {}))]
    # a curve per picked run; the "epoch": "two" line is skipped, not plotted or raised
    assert sorted(t["name"] for t in auc["data"]) == sorted(
        next(r["label"] for r in [dict(x, label=ui_label(x)) for x in store.list_runs()] if r["run_id"] == i)
        for i in (ids["healthy"], ids["epoch two"], ids["deep eval"], ids["huge float eval"]))


def ui_label(row: dict) -> str:
    from studio import ui

    return ui.run_label(row)


def test_classify_says_the_checkpoint_is_damaged_and_serves_the_other_runs(damaged, stop_runner):
    store, ids = damaged
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("../pages/classify.py")
    at.query_params["run"] = ids["bad checkpoint"]  # opened on that run (a link, or the newest run)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [
        f"The best checkpoint of run '{ids['bad checkpoint']}' is a damaged checkpoint: it has no 'model_name', "
        "'model_args', 'class_names', 'task', 'mean', 'std'; train or resume the run again to write a new one, or "
        "pick another run."]
    box = at.selectbox[0]
    assert box.value == ids["bad checkpoint"] and any(o.startswith("healthy") for o in box.options)
    box.select(ids["healthy"]).run()  # the options are run ids, shown by their labels
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("medvcnn · 28 × 28 px" in c.value for c in at.caption), [c.value for c in at.caption]
