"""core.export and core.model_card: checked ONNX / TorchScript files and an honest model card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.cli import main
from core.errors import StudioError
from core.export import export_run
from core.model_card import render_model_card
from helpers_runs import CLASS_NAMES, make_run, square_images, write_dataset_folder


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One trained medvcnn run whose dataset folder is on disk, so checks use its test images."""
    root = tmp_path_factory.mktemp("export")
    data = write_dataset_folder(root / "squares")
    run = make_run(root / "runs", "medvcnn", dataset=str(data), steps=6)
    return run, root


def _torch_logits(run, images_u8):
    from core.inference import load_run_model, preprocess

    lm = load_run_model(run)
    with torch.no_grad():
        return lm.model(preprocess(lm, images_u8)).numpy(), preprocess(lm, images_u8).numpy()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_export_matches_pytorch(shared, tmp_path):
    run, _ = shared
    result = export_run(run, "torchscript", tmp_path)
    assert result["max_abs_diff"] < 1e-4
    assert "test images" in result["check_source"] and result["n_checked"] == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_card.md"]
    # Independently of export_run's own check: load the file and compare on new images.
    images, _, _ = square_images(10, seed=99)
    expected, x = _torch_logits(run, images)
    extra = {"studio.json": ""}
    loaded = torch.jit.load(result["model"], _extra_files=extra)
    with torch.no_grad():
        got = loaded(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-4
    meta = json.loads(extra["studio.json"])
    assert meta["class_names"] == json.dumps(list(CLASS_NAMES)) and meta["mean"] == "[0.5]"


def test_onnx_export_matches_pytorch_with_any_batch(shared, tmp_path):
    import onnxruntime as ort

    run, _ = shared
    result = export_run(run, "onnx", tmp_path)
    assert result["max_abs_diff"] < 1e-4 and result["batch"] == "dynamic"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model_card.md"]
    session = ort.InferenceSession(result["model"], providers=["CPUExecutionProvider"])
    images, _, _ = square_images(7, seed=98)
    expected, x = _torch_logits(run, images)
    for batch in (x[:1], x):  # the batch axis is dynamic
        got = session.run(None, {"input": batch})[0]
        assert got.shape == (len(batch), 2)
        assert np.abs(got - expected[:len(batch)]).max() < 1e-4
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["class_names"]) == list(CLASS_NAMES) and props["task"] == "binary"


def test_failed_onnx_check_leaves_no_file(shared, tmp_path, monkeypatch):
    import onnxruntime as ort

    run, _ = shared
    real = ort.InferenceSession

    class Drifting:
        """onnxruntime, but every logit is off by 0.01."""

        def __init__(self, *args, **kwargs):
            self.session = real(*args, **kwargs)

        def run(self, *args, **kwargs):
            return [o + 0.01 for o in self.session.run(*args, **kwargs)]

    monkeypatch.setattr(ort, "InferenceSession", Drifting)
    with pytest.raises(StudioError, match="differ from PyTorch's by 0.01"):
        export_run(run, "onnx", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no model, no card, no temporary file


def test_failed_torchscript_check_leaves_no_file(shared, tmp_path, monkeypatch):
    run, _ = shared
    monkeypatch.setattr("core.export._max_abs_diff", lambda got, expected: 0.5)
    with pytest.raises(StudioError, match="not saved"):
        export_run(run, "torchscript", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_model_card_has_the_real_numbers(shared, tmp_path):
    run, _ = shared
    result = export_run(run, "onnx", tmp_path)
    card = (tmp_path / "model_card.md").read_text()
    assert card.startswith(render_model_card(run).rstrip("\n")) and "## Export" in card
    ev = json.loads(run.eval_path.read_text())
    for split in ("val", "test"):
        e = ev[split]
        for value in (e["acc"], e["auc"], e["macro"]["f1"], e["macro"]["precision"], e["kappa"], e["log_loss"]):
            assert f"{value:.4f}" in card, (split, value)
        assert f"| {e['n']} |" in card
    for row in ev["test"]["per_class"]:
        assert f"| {row['class']} | {row['support']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} |" in card
    assert run.id in card and "medvcnn" in card
    assert all(f"| {i} | {c} |" in card for i, c in enumerate(CLASS_NAMES))
    assert "binary" in card
    assert "28 x 28" in card and "mean = [0.5]" in card and "std = [0.5]" in card and "pixels / 255" in card
    assert "not a medical device" in card and "Only images like the training set" in card
    assert "| optimizer | adam |" in card and "| lr | 0.003 |" in card
    from core.models import model_info

    assert f"{model_info('medvcnn', 1, 2, 28).params:,}" in card
    assert "T = 1.2500" in card
    assert f"{result['max_abs_diff']:.2e}" in card and "test images of squares" in card


def test_check_images_from_the_caller_and_noise(tmp_path):
    run = make_run(tmp_path / "runs", "medvcnn", dataset=None, steps=1)  # dataset not loadable
    images, _, _ = square_images(5, seed=3)
    given = export_run(run, "torchscript", tmp_path / "a", check_images=images)
    assert given["n_checked"] == 5 and "given by the caller" in given["check_source"]
    noise = export_run(run, "torchscript", tmp_path / "b")
    assert "noise" in noise["check_source"] and noise["max_abs_diff"] < 1e-4
    with pytest.raises(StudioError, match="check images must be"):
        export_run(run, "onnx", tmp_path / "c", check_images=torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(StudioError, match="unknown export format"):
        export_run(run, "tflite", tmp_path / "d")


@pytest.mark.parametrize("name", ["cnn_lstm", "snet", "medvlstm"])
def test_lstm_hybrids_export_to_onnx(name, tmp_path):
    run = make_run(tmp_path / "runs", name, dataset=None, steps=1)
    images, _, _ = square_images(6, seed=4)
    result = export_run(run, "onnx", tmp_path / "out", check_images=images)
    assert result["max_abs_diff"] < 1e-4


def test_export_command(shared, tmp_path, capsys):
    run, root = shared
    out = tmp_path / "exported"
    code = main(["export", run.id, "--format", "onnx", "--out", str(out), "--runs-dir", str(root / "runs")])
    assert code == 0
    assert (out / "model.onnx").is_file() and (out / "model_card.md").is_file()
    assert "model.onnx" in capsys.readouterr().out


def test_export_command_errors(shared, tmp_path, capsys):
    run, root = shared
    assert main(["export", "no-such-run", "--format", "onnx", "--runs-dir", str(root / "runs")]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err
    from core.runs import RunStore

    empty = RunStore(tmp_path / "runs").create_run({"model": "medvcnn", "dataset": "x"})
    assert main(["export", empty.id, "--format", "torchscript", "--out", str(tmp_path / "o"),
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "no best checkpoint" in capsys.readouterr().err
    assert main(["export", run.id, "--format", "tflite"]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_adaptive_pools_onnx_cannot_express_are_rewritten(tmp_path):
    """VGG-16's (7, 7) pool after 1 x 1 or 2 x 2 features: the same model, exportable."""
    from torch import nn

    from core.export import _write_onnx
    from core.inference import LoadedModel

    torch.manual_seed(0)
    pool = nn.AdaptiveAvgPool2d((3, 3))
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=5), nn.ReLU(), pool, nn.Flatten(), nn.Linear(36, 2)).eval()
    lm = LoadedModel("r", model, "tiny", ["a", "b"], "binary", [0.5], [0.5], 28, 1, 1.0, None, torch.device("cpu"))
    x = torch.randn(5, 1, 26, 26)  # (26 - 3) // 5 + 1 = 5 x 5 features; 5 is not a multiple of 3
    with torch.no_grad():
        expected = model(x).numpy()
    assert _write_onnx(lm, x, expected, tmp_path / "m.onnx") < 1e-5
    assert model[2] is pool  # the original module is back


def test_tolerance_scales_with_the_largest_logit():
    from core.export import TOLERANCE, tolerance

    assert tolerance(np.array([[0.5, -0.2]])) == TOLERANCE  # ordinary logits: 1e-4 absolute
    assert tolerance(np.array([[-2e7, 1.0]])) == pytest.approx(2e3)  # huge ones: 1e-4 relative
    assert tolerance(np.array([[np.nan, 3.0]])) == pytest.approx(3e-4)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_untrained_inception_v3_exports_with_a_relative_limit(tmp_path):
    """Untrained InceptionV3 at 28 px gives logits near 1e7; the ONNX file differs by float32
    round-off of that size (tens), as PyTorch itself does between batch sizes, not by a bug."""
    from core.inference import load_run_model, preprocess

    run = make_run(tmp_path / "runs", "inception_v3", dataset=None, steps=0)
    images, _, _ = square_images(8, seed=4)
    lm = load_run_model(run)
    assert not any(m.training for m in lm.model.modules())  # no train-mode batch norm or dropout
    assert not hasattr(lm.model.net, "AuxLogits") or lm.model.net.AuxLogits is None  # no auxiliary head
    x = preprocess(lm, images)
    with torch.no_grad():
        whole = lm.model(x).numpy().astype(np.float64)
        one_by_one = np.concatenate([lm.model(x[i:i + 1]).numpy() for i in range(len(x))]).astype(np.float64)
    largest = np.abs(whole).max()
    assert largest > 1e5
    assert np.abs(whole - one_by_one).max() / largest < 1e-5  # PyTorch's own round-off at this scale

    result = export_run(run, "onnx", tmp_path / "out", check_images=images)
    assert result["tolerance"] == pytest.approx(1e-4 * largest, rel=1e-6)
    assert 1e-4 < result["max_abs_diff"] < result["tolerance"]  # an absolute 1e-4 limit would have refused it
    assert result["max_abs_diff"] / largest < 1e-5
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert "1e-4 x the largest |logit|" in card and f"{result['tolerance']:.2e}" in card


def test_model_card_states_the_absolute_limit_for_ordinary_logits(shared, tmp_path):
    run, _ = shared
    result = export_run(run, "torchscript", tmp_path)
    card = (tmp_path / "model_card.md").read_text()
    assert result["tolerance"] >= 1e-4
    assert f"{result['max_abs_diff']:.2e}" in card and "(limit " in card
