"""The hosted demo (``STUDIO_DEMO=1``): each cap refuses what is over it with a sentence that
says what to do, the command line and the pages obey the same limits, the limits are shown,
a visitor touches only their own runs, and sign-in appears only when the operator sets it up."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import ConfigError, DataError, StudioError
from core.data import count_dataset_images
from core.limits import Limits, check_upload_size, current_limits, demo_enabled
from core.runs import JobRunner, RunStore
from core.train import build_params, make_config
from core.train.config import validate
from helpers_runs import write_dataset_folder

APP = str(Path(__file__).resolve().parent.parent / "studio" / "app.py")


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    return current_limits()


class IdleExecutor:
    """A worker that never finishes: the first run stays running, the others queued."""

    def start(self, run, gpu=None):
        return object()

    def is_alive(self, handle):
        return True

    def exit_code(self, handle):
        return None

    def terminate(self, handle):
        pass

    kill = terminate


@pytest.fixture
def stop_runner():
    """The pages start a job runner thread per runs directory; stop this test's at its end."""
    yield
    from studio import ui

    ui._runner(ui._root()).stop()


# ---------------------------------------------------------------------------- the limits themselves
@pytest.mark.parametrize("value, on", [("1", True), ("yes", True), ("", False), ("0", False), ("off", False)])
def test_demo_switch(value, on):
    assert demo_enabled({"STUDIO_DEMO": value}) is on


def test_no_limits_outside_the_demo():
    lim = current_limits({})
    assert lim == Limits() and lim.describe() == []


def test_demo_defaults_and_operator_overrides():
    lim = current_limits({"STUDIO_DEMO": "1"})
    assert (lim.max_epochs, lim.image_sizes, lim.max_images, lim.max_active_runs) == (20, (28, 64), 30_000, 2)
    assert (lim.max_upload_mb, lim.max_uploads, lim.max_zip_files) == (50, 5, 5_000)
    assert lim.own_runs_only and lim.private_uploads
    assert "at most 20 epochs per run" in lim.describe()
    assert "you can delete or cancel only your own runs" in lim.describe()

    lim = current_limits({"STUDIO_DEMO": "1", "STUDIO_DEMO_MAX_EPOCHS": "5", "STUDIO_DEMO_IMAGE_SIZES": "64, 28,28"})
    assert lim.max_epochs == 5 and lim.image_sizes == (28, 64)


@pytest.mark.parametrize("name, raw", [("STUDIO_DEMO_MAX_EPOCHS", "0"), ("STUDIO_DEMO_MAX_RUNS", "two"),
                                       ("STUDIO_DEMO_IMAGE_SIZES", "32"), ("STUDIO_DEMO_IMAGE_SIZES", "a,b")])
def test_operator_mistakes_are_named(name, raw):
    with pytest.raises(ConfigError, match=f"{name} must .* not '{raw}'; fix it in the server's environment"):
        current_limits({"STUDIO_DEMO": "1", name: raw})


# ---------------------------------------------------------------------------- training settings
def test_epochs_over_the_demo_cap_are_refused(demo):
    validate(make_config("breastmnist", "medvcnn", "default", epochs=20))
    with pytest.raises(ConfigError, match="20"):
        validate(make_config("breastmnist", "medvcnn", "default", epochs=21))


def test_image_size_not_offered_in_the_demo_is_refused(demo):
    with pytest.raises(ConfigError, match="image size 128 is not offered in this demo; choose one of 28, 64"):
        validate(make_config("breastmnist", "medvcnn", "default", image_size=128))


def test_dataset_over_the_demo_size_is_refused(demo, tmp_path):
    # PathMNIST has 107,180 images (its official splits), counted without the file on disk.
    assert count_dataset_images("pathmnist") == 107_180
    with pytest.raises(ConfigError, match="pathmnist has 107,180 images and this demo trains on at most 30,000"):
        validate(make_config("pathmnist", "medvcnn", "default", epochs=10))
    folder = write_dataset_folder(tmp_path / "imgs", {"train": 6, "val": 2, "test": 2})
    validate(make_config(str(folder), "medvcnn", "default", epochs=10), limits=Limits(demo=True, max_images=20))
    with pytest.raises(ConfigError, match="imgs has more than 5 images and this demo trains on at most 5"):
        validate(make_config(str(folder), "medvcnn", "default", epochs=10), limits=Limits(demo=True, max_images=5))


def test_the_same_settings_train_outside_the_demo():
    validate(make_config("pathmnist", "medvcnn", "default", image_size=128, epochs=21))


def test_each_session_may_queue_only_so_many_runs(demo, tmp_path):
    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, IdleExecutor(), max_concurrent=1)
    params = build_params(make_config("breastmnist", "medvcnn", "default", epochs=1))
    runner.submit_many([(params, "a"), (params, "b")], owner="ann")
    with pytest.raises(StudioError, match="you already have 2 runs queued or training and this demo allows 2 at a time"):
        runner.submit(params, "c", owner="ann")
    bob = runner.submit(params, "d", owner="bob")  # another visitor's queue is their own
    assert store.get(bob).meta()["owner"] == "bob"
    with pytest.raises(ConfigError, match="21|epochs"):
        runner.submit(build_params(make_config("breastmnist", "medvcnn", "default", epochs=21)), owner="carl")
    assert len(store.list_runs()) == 3, "refused runs leave nothing behind"


# ---------------------------------------------------------------------------- uploads
def test_uploads_over_the_size_limit_are_refused(demo):
    check_upload_size(50 * 1024**2, "scans.zip")
    with pytest.raises(DataError, match=r"scans.zip is 50.0 MB, more than the 50 MB this demo accepts"):
        check_upload_size(50 * 1024**2 + 1, "scans.zip")
    check_upload_size(10**12, "scans.zip", limits=Limits())  # no limit outside the demo


def _zip(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    return buf.getvalue()


def test_a_session_may_import_only_so_many_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_DEMO_MAX_UPLOADS", "2")
    from studio import ui

    for i in range(2):
        data = _zip(write_dataset_folder(tmp_path / f"src{i}", {"train": 4, "val": 2, "test": 2}, seed=i))
        ui.save_upload(f"set{i}.zip", data, "ann")
    third = _zip(write_dataset_folder(tmp_path / "src2", {"train": 4, "val": 2, "test": 2}, seed=2))
    with pytest.raises(StudioError, match="you have imported 2 image folders, the most this demo keeps per visitor"):
        ui.save_upload("set2.zip", third, "ann")
    assert len(ui.list_uploads("ann")) == 2
    assert len(ui.list_uploads("bob")) == 0, "uploads are private in the demo"
    ui.save_upload("set2.zip", third, "bob")
    assert [p.parent.name for p in ui.list_uploads("bob")] == [ui.owner_folder("bob")]


def test_zip_with_more_files_than_the_demo_allows_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_DEMO_MAX_ZIP_FILES", "10")
    from studio import ui

    data = _zip(write_dataset_folder(tmp_path / "src", {"train": 8, "val": 2, "test": 2}))
    with pytest.raises(StudioError, match="the zip has 12 entries, more than the limit of 10 in this demo"):
        ui.save_upload("big.zip", data, "ann")
    assert ui.list_uploads("ann") == []


# ---------------------------------------------------------------------------- own runs only
def test_visitors_delete_and_cancel_only_their_own_runs(demo, tmp_path):
    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, IdleExecutor(), max_concurrent=1)
    params = build_params(make_config("breastmnist", "medvcnn", "default", epochs=1))
    theirs = runner.submit(params, owner="bob")  # running
    mine, queued = runner.submit(params, owner="ann"), runner.submit(params, owner="bob")
    with pytest.raises(StudioError, match="started by someone else, and in this demo you can cancel only your own"):
        runner.cancel(theirs, owner="ann")
    with pytest.raises(StudioError, match="you can resume only your own runs"):
        runner.submit_existing(queued, owner="ann")
    assert runner.cancel(mine, owner="ann") == "cancelled"
    with pytest.raises(StudioError, match="you can delete only your own runs"):
        store.delete(queued, owner="ann")
    store.delete(mine, owner="ann")
    assert sorted(r["run_id"] for r in store.list_runs()) == sorted([theirs, queued])
    # the operator's command line (owner None) is never refused
    assert runner.cancel(queued) == "cancelled"
    store.delete(queued)
    assert [r["run_id"] for r in store.list_runs()] == [theirs]


# ---------------------------------------------------------------------------- what the pages show
@pytest.mark.parametrize("page", ["home", "datasets", "train"])
def test_pages_show_the_limits_in_the_demo(demo, page, stop_runner):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != "home":
        at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = "\n".join(str(e.value) for e in at.info)
    assert "This is a shared demo: at most 20 epochs per run; image sizes 28, 64 px" in shown


def test_no_limits_are_shown_outside_the_demo(stop_runner):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert "shared demo" not in "\n".join(str(e.value) for e in at.info)


def test_sign_in_is_asked_for_only_when_the_operator_configures_it(stop_runner):
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s3cret",
                          "client_id": "studio", "client_secret": "x",
                          "server_metadata_url": "https://accounts.example.org/.well-known/openid-configuration"}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [b.label for b in at.button] == ["Sign in"]
    assert "Sign in to train and use models" in "\n".join(str(m.value) for m in at.markdown)
    assert not at.info, "nothing else of the studio is shown before sign-in"


def test_classify_refuses_hostile_uploads_one_by_one(demo, monkeypatch, tmp_path, stop_runner):
    """A bomb, a file over the demo's size limit and text named .png each get one sentence;
    the good image next to them is still classified."""
    from PIL import Image

    from helpers_runs import make_run
    from test_data_images import bomb_png

    monkeypatch.setenv("STUDIO_DEMO_MAX_UPLOAD_MB", "1")
    make_run(tmp_path / "runs", steps=5)
    good = io.BytesIO()
    Image.new("L", (28, 28), 128).save(good, "PNG")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("../pages/classify.py").run()
    at.file_uploader[0].set_value([
        ("bomb.png", bomb_png(30000), "image/png"),
        ("huge.png", good.getvalue() + b"\0" * (1024**2 + 1), "image/png"),
        ("notes.png", b"just text", "image/png"),
        ("ok.png", good.getvalue(), "image/png"),
    ]).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [str(e.value) for e in at.error]
    assert len(errors) == 3, errors
    assert "**bomb.png** was skipped" in errors[0] and "megapixels" in errors[0]
    assert "**huge.png** was skipped" in errors[1] and "more than the 1 MB this demo accepts" in errors[1]
    assert "**notes.png** was skipped" in errors[2] and "not an image" in errors[2]
    assert len(at.image) >= 2, "ok.png is shown with its explanation"
