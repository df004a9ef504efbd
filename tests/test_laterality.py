"""Left and right (issue 15, item 4): class names that name a side are detected, a person
can mark their own data, and such data is never mirrored: no left-right flips or turns in
training, no flip averaging at test time, and the pages say why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data.augment import augment_batch, augment_spec, without_mirroring
from core.data.laterality import (
    Laterality,
    dataset_laterality,
    lateral_classes,
    mark_path,
    read_mark,
    side_words,
    spec_class_names,
    spec_laterality,
    write_mark,
)
from core.runs import RunStore
from core.runs.worker import train_in_this_process as run_training  # records status and times
from core.train import build_params, make_config
from helpers_runs import square_images, write_dataset_folder
from test_pages import _stop_job_runner, no_failure, open_page, texts  # noqa: F401 - shared fixture/helpers

SIDES = ("kidney_left", "kidney_right")


def write_sided_folder(root: Path) -> Path:
    """The square task with classes named kidney_left / kidney_right."""
    for k, (split, n) in enumerate({"train": 64, "val": 16, "test": 16}.items()):
        images, labels, _ = square_images(n, seed=40 + k)
        for i, (img, y) in enumerate(zip(images, labels)):
            folder = root / split / SIDES[int(y)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def sided_run(tmp_path_factory):
    """A run trained (1 epoch) on the kidney_left/right folder with the default recipe, which
    asks for flip-and-shift augmentation and test-time flips; records every augmentation."""
    folder = write_sided_folder(tmp_path_factory.mktemp("sided") / "kidneys")
    root = tmp_path_factory.mktemp("sided-runs") / "runs"
    store = RunStore(root)
    cfg = make_config(str(folder), "medvcnn", "default", image_size=28, epochs=1, batch_size=16, device="cpu",
                      schedule="none")
    assert cfg.augment == "flipshift" and cfg.tta, "the recipe asks for flips; the data must overrule it"
    run = store.create_run(build_params(cfg), name="kidneys")
    import core.data

    seen = []
    original = core.data.augment_batch

    def recording(x, preset, generator=None):
        out = original(x, preset, generator=generator)
        seen.append((augment_spec(preset), x.clone(), out.clone()))
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(core.data, "augment_batch", recording)
    try:
        run_training(run, store)
    finally:
        mp.undo()
    assert run.meta()["status"] == "completed"
    return {"root": root, "run": run, "folder": folder, "augmented": seen}


# ---------------------------------------------------------------------------- detection
@pytest.mark.parametrize("name, words", [
    ("kidney_left", {"left"}), ("lung_right", {"right"}), ("femur-left", {"left"}), ("Left", {"left"}),
    ("Lung Right", {"right"}), ("LEFT.ventricle", {"left"}), ("left-and-right", {"left", "right"}),
    ("R", set()), ("L", set()), ("bright", set()), ("leftover", set()), ("rightward", set()),
    ("links", set()), ("rechts", set()), ("copyright", set()), ("normal", set()),
])
def test_side_words(name, words):
    assert side_words(name) == words


def test_detection_from_class_names_and_medmnist_labels():
    assert lateral_classes(["bladder", "femur-left", "femur-right", "heart", "kidney_left"]) == [
        "femur-left", "femur-right", "kidney_left"]
    assert lateral_classes(["malignant", "normal, benign"]) == []
    organs = spec_class_names("organamnist")
    assert "kidney-left" in organs and "lung-right" in organs
    side = spec_laterality("organamnist")
    assert side.side_matters and side.source == "class names"
    assert side.reason().startswith("classes name left and right (femur-left, femur-right, kidney-left, kidney-right")
    assert not spec_laterality("breastmnist").side_matters
    assert spec_laterality("synthetic-squares") is None, "unknown without loading: decided at training"
    assert Laterality.from_dict(side.to_dict()) == side


def test_a_persons_mark_is_stored_with_the_dataset_and_wins(tmp_path):
    folder = write_dataset_folder(tmp_path / "scans")
    assert read_mark(folder) is None
    assert spec_class_names(str(folder)) == ["absent", "present"]
    assert not spec_laterality(str(folder)).side_matters
    write_mark(folder, True)
    assert json.loads(mark_path(folder).read_text()) == {"side_matters": True}
    side = spec_laterality(str(folder))
    assert side.side_matters and side.source == "marked"
    assert "you marked this dataset" in side.reason()
    write_mark(folder, False)
    assert not dataset_laterality(str(folder), ["kidney_left", "kidney_right"]).side_matters, \
        "the person knows their data"
    from core.data import load_dataset

    assert load_dataset(str(folder), size=28).class_names == ["absent", "present"], "the mark is not a class"


# ---------------------------------------------------------------------------- augmentation
def _left_bright(n: int = 64) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, :, :14] = 1.0
    return x


@pytest.mark.parametrize("preset", ["light", "flipshift", "medvcnn", "snet"])
def test_without_mirroring_never_moves_the_left_side_to_the_right(preset):
    spec = without_mirroring(preset)
    assert spec.hflip == 0 and not spec.quarter_turns and spec.eighth_turn == 0
    assert "left and right matter" in spec.description
    x = _left_bright()
    for seed in range(5):
        out = augment_batch(x, spec, generator=torch.Generator().manual_seed(seed))
        left, right = out[..., :14].mean(dim=(1, 2, 3)), out[..., 14:].mean(dim=(1, 2, 3))
        assert (left > right).all(), "every image keeps its bright side on the left"
    full = augment_batch(x, preset, generator=torch.Generator().manual_seed(0))
    flipped = (full[..., :14].mean(dim=(1, 2, 3)) < full[..., 14:].mean(dim=(1, 2, 3))).sum()
    assert flipped > 5, "the full preset does mirror (so the check above means something)"
    assert without_mirroring("none") == augment_spec("none")


def test_training_on_left_right_classes_does_not_flip(sided_run):
    seen = sided_run["augmented"]
    assert seen, "augmentation ran"
    for spec, _, _ in seen:
        assert spec.hflip == 0 and not spec.quarter_turns and spec.eighth_turn == 0
        assert spec.pixel_shift > 0, "the rest of flipshift (whole-pixel shifts) is kept"
    run = sided_run["run"]
    ckpt = run.load_checkpoint("best")
    assert ckpt["laterality"]["side_matters"] is True
    assert ckpt["config"]["mirror"] is False and ckpt["config"]["tta"] is False
    assert run.params()["laterality"]["side_matters"] is True, "recorded in the run's params"
    assert run.params()["laterality"]["classes"] == list(SIDES)
    assert run.meta()["laterality"]["reason"].startswith("classes name left and right")


def test_augmented_batches_of_a_sided_run_are_shifts_not_mirrors(sided_run):
    for _, before, after in sided_run["augmented"][:3]:
        for b, a in zip(before, after):
            shifts = [torch.roll(b, (dy, dx), dims=(1, 2)) for dy in range(-2, 3) for dx in range(-2, 3)]
            inner = (slice(None), slice(3, -3), slice(3, -3))  # away from the filled-in border
            assert any(torch.equal(s[inner], a[inner]) for s in shifts), "each output is its own image, shifted"


# ---------------------------------------------------------------------------- inference
def test_no_flip_averaging_for_a_sided_run(sided_run, tmp_path):
    from core.train.evaluation import evaluate_run
    from core.inference import load_image_tensor, load_run_model, predict_tensor

    lm = load_run_model(sided_run["run"])
    assert lm.mirror is False and "classes name left and right" in lm.mirror_reason
    files = sorted((sided_run["folder"] / "test").rglob("*.png"))[:6]
    batch = torch.stack([load_image_tensor(lm, f) for f in files])
    plain = predict_tensor(lm, batch)["probs"]
    np.testing.assert_array_equal(predict_tensor(lm, batch, tta=True)["probs"], plain)
    lm.mirror = True  # the same model allowed to mirror: the flip does change the answer
    assert np.abs(predict_tensor(lm, batch, tta=True)["probs"] - plain).max() > 1e-6
    ev = evaluate_run(sided_run["run"], tta=True, splits=("test",))
    assert all(split["tta"] is False for split in ev.values()), "eval says it did not mirror"


def test_classify_and_train_pages_say_why(sided_run, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(sided_run["root"], root)
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    at = open_page("classify")
    no_failure(at)
    tta = at.checkbox[0]
    assert tta.label == "Test-time augmentation" and tta.disabled
    assert "No mirror images for this model: classes name left and right (kidney_left, kidney_right)" in \
        texts(at.info)

    data = tmp_path / "data"
    (data / "uploads" / "someone").mkdir(parents=True)
    shutil.copytree(sided_run["folder"], data / "uploads" / "someone" / "kidneys")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    at = open_page("train")
    assert not at.exception, [e.value for e in at.exception]
    note = texts(at.info)
    assert "Left and right matter here" in note
    assert "classes name left and right" in note and "so images are not mirrored" in note


def test_datasets_page_marks_own_data(tmp_path, monkeypatch):
    data = tmp_path / "data"
    folder = write_dataset_folder(data / "uploads" / "someone" / "scans")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    at = open_page("datasets")
    assert not at.exception, [e.value for e in at.exception]
    box = at.checkbox(key="sides-scans")
    assert box.value is False, "absent/present name no side"
    box.check().run()
    assert not at.exception
    assert read_mark(folder) is True
    assert spec_laterality(str(folder)).source == "marked"
    at.run()
    assert at.checkbox(key="sides-scans").value is True, "the stored answer is shown again"
