"""One way to assemble and submit a run (core.runs.submit), and readable run names for
uploaded folders (issue 13): the id and name say ``organa_folder``, never the server path."""

from __future__ import annotations

import pytest

from core.cli import main
from core.errors import StudioError
from core.paths import readable_dataset_name
from core.runs import JobRunner, RunStore
from core.runs.store import new_run_id
from core.runs.submit import default_run_name, run_request, run_requests, submit
from helpers_runs import write_dataset_folder

UPLOAD = "organa_folder-1a2b3c4d"  # how core.data.uploads keeps an uploaded zip: <name>-<8 hex>


class RecordingExecutor:
    """Starts nothing: records which runs the runner launched (they stay 'running')."""

    name = "recording"

    def __init__(self):
        self.started: list[str] = []

    def start(self, run):
        self.started.append(run.id)
        return run.id

    def is_alive(self, handle) -> bool:
        return True

    def terminate(self, handle) -> None:
        pass


@pytest.fixture
def upload(tmp_path):
    """An uploaded image folder where the Datasets page keeps one: <data>/uploads/<owner>/<name>-<hash>."""
    return write_dataset_folder(tmp_path / "data" / "uploads" / "session-ab12" / UPLOAD,
                                {"train": 24, "val": 8, "test": 8})


@pytest.mark.parametrize("spec, name", [
    ("breastmnist", "breastmnist"),
    ("/srv/studio/data/uploads/session-ab12/organa_folder-1a2b3c4d", "organa_folder"),
    ("/srv/studio/data/uploads/session-ab12/organa_folder-1a2b3c4d/", "organa_folder"),
    ("/home/me/scans.zip", "scans"),
    ("C:\\images\\chest_xrays", "chest_xrays"),
    ("/data/uploads/abc/scans-1234", "scans-1234"),  # not a content hash: kept
    (None, "-"),
])
def test_readable_dataset_name(spec, name):
    assert readable_dataset_name(spec) == name


def test_run_id_of_an_upload_names_the_dataset_not_the_path():
    params = {"config": {"model": "medvcnn", "dataset": f"/srv/studio/data/uploads/session-ab12/{UPLOAD}"}}
    run_id = new_run_id(params)
    assert run_id.split("-")[2:4] == ["medvcnn", "organa_folder"]
    assert "srv" not in run_id and "uploads" not in run_id and "1a2b3c4d" not in run_id


def test_run_requests_name_runs_after_the_readable_dataset(upload):
    one = run_requests(upload, ["medvcnn"], image_size=28, epochs=1)
    assert [r.name for r in one] == ["medvcnn on organa_folder, 28 px"]
    assert one[0].params["config"]["dataset"] == str(upload)  # the path is kept where it is needed
    assert one[0].config.epochs == 1
    named = run_requests(upload, ["medvcnn", "resnet18"], name="pilot", image_size=28, epochs=1)
    assert [r.name for r in named] == ["pilot (medvcnn)", "pilot (resnet18)"]
    assert [r.name for r in run_requests(upload, ["medvcnn"], name="pilot", epochs=1)] == ["pilot"]
    assert default_run_name("medvcnn", "breastmnist", 64) == "medvcnn on breastmnist, 64 px"


def test_submit_queues_every_request_with_its_name_and_owner(upload, tmp_path):
    store = RunStore(tmp_path / "runs")
    executor = RecordingExecutor()
    runner = JobRunner(store, executor, max_concurrent=4)
    ids = submit(runner, run_requests(upload, ["medvcnn", "logreg"], epochs=1), owner="session-ab12")
    assert executor.started == ids and len(ids) == 2
    rows = {r["run_id"]: r for r in store.list_runs()}
    assert [rows[i]["name"] for i in ids] == ["medvcnn on organa_folder, 28 px", "logreg on organa_folder, 28 px"]
    assert all(rows[i]["owner"] == "session-ab12" for i in ids)
    assert all("organa_folder" in i and "uploads" not in i for i in ids)


def test_a_bad_setting_or_a_missing_dataset_fails_before_any_run_exists(upload, tmp_path):
    with pytest.raises(StudioError, match="epochs"):
        run_request(upload, "medvcnn", epochs=0)
    with pytest.raises(StudioError, match="neither a MedMNIST name nor an existing folder"):
        run_request(tmp_path / "nowhere", "medvcnn", epochs=1, check_data=True)
    assert RunStore(tmp_path / "runs").list_runs() == []


def test_cli_train_on_an_upload_names_the_run_after_the_dataset(upload, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["train", "--dataset", str(upload), "--model", "logreg", "--epochs", "1", "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    (row,) = RunStore(runs).list_runs()
    assert row["status"] == "completed" and f"run {row['run_id']}:" in out
    assert "organa_folder" in row["run_id"] and "uploads" not in row["run_id"] and str(tmp_path.name) not in row["run_id"]
    assert row["name"] == row["run_id"]  # no --name: the command line names a run by its id, as before
