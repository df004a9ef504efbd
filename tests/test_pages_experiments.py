"""The Experiments page and its builder, driven headless with Streamlit's AppTest: the builder
shows how many runs a plan starts and an estimate before launch, a launch stores the
experiment and its driver trains exactly the planned member runs, the demo's caps refuse a
launch with a sentence, and the leaderboard ranks by the validation metric with "use the best
run" pointing at the best run's id.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.experiments import ExperimentBook, create_experiment, get_experiment, parse_grid, plan_sweep
from core.experiments.driver import member_params
from core.runs import RunStore
from tests.helpers_runs import write_dataset_folder

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "studio" / "app.py")
PAGE = "../pages/experiments.py"
TIMEOUT = 180


@pytest.fixture(autouse=True)
def _stop_processes():
    """Stop this test's job runner thread, and any experiment driver it left behind."""
    yield
    from studio import ui

    ui._runner(ui._root()).stop()
    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    for row in ExperimentBook(store).list():
        pid = (ExperimentBook(store).get(row["exp_id"]).driver or {}).get("pid")
        if row["status"] == "running" and isinstance(pid, int) and pid != os.getpid():
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def squares(tmp_path) -> str:
    """A tiny imported image folder (16 training images, 28 px) the builder offers."""
    folder = tmp_path / "data" / "uploads" / "someone" / "squares-0123abcd"
    return str(write_dataset_folder(folder, {"train": 16, "val": 8, "test": 8}))


@pytest.fixture
def breast(tmp_path, medmnist_dir) -> str:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "breastmnist.npz").symlink_to(medmnist_dir / "breastmnist.npz")
    return "breastmnist"


def open_page(owner: str | None = None, exp: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if owner:
        at.session_state["owner"] = owner
    at.run()
    at.switch_page(PAGE)
    if exp:
        at.query_params["exp"] = exp
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def launch_button(at: AppTest):
    found = [b for b in at.button if b.label == "Launch the experiment"]
    assert len(found) == 1, [b.label for b in at.button]
    return found[0]


def page_links(at: AppTest) -> dict[str, str]:
    return {e.proto.label: e.proto.query_string for e in at.get("page_link")}


def wait_status(store: RunStore, exp_id: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get_experiment(store, exp_id).status
        if status not in ("planned", "running"):
            return status
        time.sleep(1.0)
    raise AssertionError(f"experiment {exp_id} still {get_experiment(store, exp_id).status} after {timeout} s")


# ---------------------------------------------------------------------------- builder
def test_builder_counts_estimates_and_launches_the_planned_runs(squares):
    at = open_page()
    at.radio(key="expb_kind").set_value("sweep").run()
    at.text_area(key="expb_grid").set_value("lr=1e-3,3e-3\nweight_decay=0,1e-4").run()
    at.number_input(key="expb_epochs").set_value(1).run()
    assert not at.error, [e.value for e in at.error]
    shown = metrics(at)
    assert shown["Runs it will start"] == "4"
    assert shown["Estimated time"].startswith("about ")
    assert "rough estimate" in " ".join(c.value for c in at.caption)

    at.number_input(key="expb_draws").set_value(2).run()  # two of the four combinations, drawn at random
    assert metrics(at)["Runs it will start"] == "2"
    launch_button(at).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Launched" in s.value for s in at.success)

    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    listed = ExperimentBook(store).list()
    assert len(listed) == 1 and listed[0]["kind"] == "sweep" and listed[0]["planned"] == 2
    exp_id = listed[0]["exp_id"]
    assert page_links(at)["Follow it on the Experiments page"] == f"exp={exp_id}"
    assert wait_status(store, exp_id) == "completed"
    exp = get_experiment(store, exp_id)
    planned = [(r["config"]["lr"], r["config"]["weight_decay"], r["config"]["epochs"]) for r in exp.planned_runs]
    assert len(set(planned)) == 2 and all(e == 1 for *_, e in planned)
    trained = sorted((store.get(i).params()["config"]["lr"], store.get(i).params()["config"]["weight_decay"],
                      store.get(i).params()["config"]["epochs"]) for i in exp.members)
    assert trained == sorted(planned)
    assert all(store.get(i).params()["experiment"] == exp_id for i in exp.members)
    assert all(store.get(i).meta()["status"] == "completed" for i in exp.members)

    at.run()  # the page now lists it and shows its two finished runs
    frame = at.dataframe[1].value
    assert sorted(frame["Run"]) == sorted(exp.members) and list(frame["Rank"]) == [1, 2]
    assert list(frame["validation AUC"]) == sorted(frame["validation AUC"], reverse=True)


def test_builder_shows_auto_budget_before_launch(squares):
    at = open_page()
    assert at.radio(key="expb_kind").value == "auto"
    at.number_input(key="expb_minutes").set_value(2.0).run()
    assert metrics(at) == {"Runs it will start": "as many as fit", "Time": "2 min"}
    assert not at.error


def test_demo_refuses_a_plan_over_the_runs_cap(breast, monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_DEMO_EXP_RUNS", "3")
    at = open_page()
    assert any("at most 3 runs per experiment" in i.value for i in at.info)
    at.radio(key="expb_kind").set_value("sweep").run()
    at.number_input(key="expb_epochs").set_value(1).run()
    at.text_area(key="expb_grid").set_value("lr=1e-3,2e-3,3e-3,4e-3").run()
    assert [e.value for e in at.error] == ["This plan has 4 runs and this demo allows 3 per experiment; use fewer "
                                           "values or seeds."]
    assert [b.disabled for b in at.button if b.label == "Launch the experiment"] == [True]
    assert ExperimentBook(RunStore(os.environ["STUDIO_RUNS_DIR"])).list() == []


def test_demo_refuses_a_launch_past_the_visitors_budget(breast, monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_DEMO_EXP_MINUTES", "2")
    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    from core.experiments import plan_auto

    earlier = create_experiment(store, plan_auto("breastmnist", 1.5, owner="visitor-a"))
    at = open_page(owner="visitor-a")
    assert any("2 estimated minutes of experiments per visitor (you have used 2)" in i.value for i in at.info)
    at.number_input(key="expb_minutes").set_value(1.0).run()
    launch_button(at).click().run()
    errors = [e.value for e in at.error]
    assert errors == ["This experiment needs about 1 min and you have used 2 of the 2 min this demo gives each "
                      "visitor; delete an experiment or plan a smaller one."]
    assert [r["exp_id"] for r in ExperimentBook(store).list()] == [earlier.id]


# ---------------------------------------------------------------------------- leaderboard
def fabricated_sweep(store: RunStore, dataset: str, val_aucs: dict[float, float],
                     owner: str | None = None) -> tuple[str, dict[float, str]]:
    """A completed sweep over lr whose member runs have the given validation AUC per lr
    (test AUC = 1.5 - val AUC, so test ranks them the other way round)."""
    exp = create_experiment(store, plan_sweep(dataset, parse_grid([f"lr={','.join(map(str, val_aucs))}"]),
                                              model="medvcnn", fixed={"epochs": 1}, name="lr [sweep](x)",
                                              owner=owner))
    ids = {}
    for i, entry in enumerate(exp.planned_runs):
        run = store.create_run(member_params(exp, entry, item=i), name=f"{exp.name} · {entry['label']}")
        val = val_aucs[entry["config"]["lr"]]
        run.write_eval({"val": {"acc": val - 0.1, "auc": val}, "test": {"acc": 1.4 - val, "auc": 1.5 - val}})
        run.append_metrics({"kind": "epoch", "epoch": 1, "step": 1, "val_auc": val})
        run.best_checkpoint.parent.mkdir(parents=True, exist_ok=True)
        run.best_checkpoint.write_bytes(b"stand-in")  # can_classify checks the file is there
        store.update_meta(run.id, status="completed", epochs_done=1, epochs=1, train_seconds=2.0 + i,
                          finished=f"2026-12-02T17:0{i + 1}:00+00:00")
        ids[entry["config"]["lr"]] = run.id
    ExperimentBook(store).update(exp.id, add_members=list(ids.values()), status="completed",
                                 started="2026-12-02T17:00:00+00:00", finished="2026-12-02T17:05:00+00:00")
    return exp.id, ids


def test_leaderboard_ranks_by_validation_and_links_the_best_run(breast):
    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    exp_id, ids = fabricated_sweep(store, "breastmnist", {0.001: 0.71, 0.002: 0.93, 0.003: 0.82})
    at = open_page(exp=exp_id)
    assert not at.error, [e.value for e in at.error]
    listing, board = at.dataframe[0].value, at.dataframe[1].value
    assert list(listing["Name"]) == ["lr [sweep](x)"]  # shown as typed, in a cell
    assert list(listing["Runs"]) == ["3/3"] and listing["Best (validation)"][0] == pytest.approx(0.93)
    assert listing["Best run"][0] == ids[0.002]
    assert list(board["Run"]) == [ids[0.002], ids[0.003], ids[0.001]]
    assert list(board["Rank"]) == [1, 2, 3]
    assert list(board["validation AUC"]) == pytest.approx([0.93, 0.82, 0.71])
    assert list(board["Test AUC"]) == pytest.approx([0.57, 0.68, 0.79])  # shown, never used to rank
    assert list(board["Settings"]) == ["lr=0.002", "lr=0.003", "lr=0.001"]
    assert list(board["Status"]) == ["completed"] * 3
    links = page_links(at)
    assert links["Use the best run on Classify"] == f"run={ids[0.002]}"
    assert links["Open it on Compare"] == f"run={ids[0.002]}"
    assert metrics(at)["Best so far"] == "0.9300" and metrics(at)["Runs finished"] == "3/3"
    assert any("needs" not in c.value and "Parameter importances come from an Auto search" in c.value
               for c in at.caption)
    title = [m.value for m in at.markdown if "lr" in m.value and "sweep" in m.value and "**" in m.value]
    assert title and "lr \\[sweep\\](x)" in title[0]  # the experiment's name escaped in Markdown


def test_delete_removes_the_experiment_and_keeps_its_runs(breast):
    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    exp_id, ids = fabricated_sweep(store, "breastmnist", {0.001: 0.7, 0.002: 0.8})
    at = open_page(exp=exp_id)
    [b for b in at.button if b.label == "Delete the experiment"][0].click().run()
    assert not at.exception and not at.error
    assert ExperimentBook(store).list() == []
    assert {r["run_id"] for r in store.list_runs()} == set(ids.values())
    assert any("No experiment yet" in i.value for i in at.info)


def test_seeds_experiment_shows_mean_std_and_interval(breast):
    import numpy as np
    from scipy import stats

    from core.experiments import plan_seeds
    from core.train import build_params, make_config

    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    source = store.create_run(build_params(make_config("breastmnist", "medvcnn", "default", epochs=1, seed=0)),
                              name="source")
    exp = create_experiment(store, plan_seeds(store, source.id, n=3))
    test_accs = [0.80, 0.84, 0.86]
    members = []
    for i, (entry, acc) in enumerate(zip(exp.planned_runs, test_accs)):
        run = store.create_run(member_params(exp, entry, item=i), name=entry["label"])
        run.write_eval({"val": {"acc": acc - 0.05, "auc": acc}, "test": {"acc": acc, "auc": acc + 0.05}})
        store.update_meta(run.id, status="completed", epochs_done=1, epochs=1)
        members.append(run.id)
    ExperimentBook(store).update(exp.id, add_members=members, status="completed")
    at = open_page(exp=exp.id)
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[2].value
    row = table[(table["Split"] == "test") & (table["Metric"] == "acc")].iloc[0]
    assert row["Mean"] == pytest.approx(np.mean(test_accs))
    assert row["Std"] == pytest.approx(np.std(test_accs, ddof=1))
    half = stats.t.ppf(0.975, 2) * np.std(test_accs, ddof=1) / np.sqrt(3)
    assert row["95 % interval"] == f"{np.mean(test_accs) - half:.4f} .. {np.mean(test_accs) + half:.4f}"
    assert row["Runs"] == 3
    assert sorted(at.dataframe[1].value["Settings"]) == ["seed=1", "seed=2", "seed=3"]


def test_live_leaderboard_ranks_a_running_trial_by_its_best_epoch_so_far(breast):
    import socket

    import psutil

    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    exp_id, ids = fabricated_sweep(store, "breastmnist", {0.001: 0.80, 0.002: 0.70})
    running = ids[0.002]
    me = psutil.Process()  # this process stands in for the driver and the worker (the runner checks they live)
    store.update_meta(running, status="running", epochs_done=1, epochs=3, pid=me.pid, pid_created=me.create_time(),
                      host=socket.gethostname(), executor="local")
    store.get(running).eval_path.unlink()  # not evaluated yet: ranked by its epochs so far
    ExperimentBook(store).update(exp_id, status="running", finished=None,
                                 driver={"pid": me.pid, "pid_created": me.create_time(), "host": socket.gethostname()})
    at = open_page(exp=exp_id)
    board = at.dataframe[1].value
    assert list(board["Run"]) == [ids[0.001], running]
    assert list(board["validation AUC"]) == pytest.approx([0.80, 0.70])
    assert list(board["Status"]) == ["completed", "running"]
    assert metrics(at)["Training now"] == "1"
    store.get(running).append_metrics({"kind": "epoch", "epoch": 2, "step": 2, "val_auc": 0.91})
    at.run()  # the next redraw: the running trial's better epoch moves it to the top
    board = at.dataframe[1].value
    assert list(board["Run"]) == [running, ids[0.001]]
    assert list(board["validation AUC"]) == pytest.approx([0.91, 0.80])
    assert page_links(at)["Use the best run so far on Classify"] == f"run={ids[0.001]}"  # only finished runs count


def test_demo_only_the_owner_may_cancel_or_delete(breast, monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    store = RunStore(os.environ["STUDIO_RUNS_DIR"])
    exp_id, _ = fabricated_sweep(store, "breastmnist", {0.001: 0.7, 0.002: 0.8}, owner="visitor-a")
    ExperimentBook(store).update(exp_id, status="interrupted")  # no driver: cancel is offered
    other = open_page(owner="visitor-b", exp=exp_id)
    labels = [b.label for b in other.button]
    assert "Cancel the experiment" not in labels and "Delete the experiment" not in labels
    assert any("Another visitor started this experiment" in c.value for c in other.caption)
    mine = open_page(owner="visitor-a", exp=exp_id)
    [b for b in mine.button if b.label == "Cancel the experiment"][0].click().run()
    assert not mine.error, [e.value for e in mine.error]
    assert get_experiment(store, exp_id).status == "cancelled"


def test_train_page_offers_the_builder_and_auto(squares):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("../pages/train.py")
    at.run()
    assert [b.label for b in at.button if b.label == "Launch the experiment"] == []  # one run by default
    at.toggle(key="train_experiment").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="expb_kind").value == "auto"
    at.number_input(key="expb_minutes").set_value(3.0).run()
    assert metrics(at) == {"Runs it will start": "as many as fit", "Time": "3 min"}
    assert len([b for b in at.button if b.label == "Launch the experiment"]) == 1


def test_the_leaderboard_names_autos_final_run():
    from studio.experiment_charts import settings_text

    settings = {"arch": "medvcnn@28", "lr": 0.003}
    assert settings_text({"settings": settings, "trial": {"number": 2, "params": settings}}) == "arch=medvcnn@28 lr=0.003"
    assert settings_text({"settings": settings, "trial": {"number": 5, "final": True, "from_trial": 3}}) == \
        "final (trial 3's settings): arch=medvcnn@28 lr=0.003"
    kept = {"number": 6, "final": True, "from_trial": 0, "default_kept": {"over": 3, "margin": 1e-4, "tolerance": 2e-4}}
    assert settings_text({"settings": settings, "trial": kept}) == \
        "final (trial 0's settings, the default kept over trial 3): arch=medvcnn@28 lr=0.003"
    assert settings_text({"settings": settings, "trial": {"final": True, "from_trial": None}}) == \
        "final: arch=medvcnn@28 lr=0.003"
    assert settings_text({"label": "seed 1"}) == "seed 1"
