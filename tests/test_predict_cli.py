"""``python -m core predict``: one CSV row per file, bad files reported, never fatal."""

from __future__ import annotations

import csv
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.cli.predict import safe_stem
from helpers_runs import CLASS_NAMES, make_run, square_images

HEADER = ["file", "label", "p_absent", "p_present", "entropy", "confidence", "fit", "note", "error"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict") / "runs"
    return make_run(root, "medvcnn", steps=8), root


@pytest.fixture
def mixed(tmp_path):
    """2 PNGs and a JPEG (different sizes), a truncated PNG, text named .png, a .txt file."""
    d = tmp_path / "mixed"
    d.mkdir()
    images, _, _ = square_images(4, seed=11)
    Image.fromarray(images[0, 0].numpy()).save(d / "a.png")
    Image.fromarray(np.kron(images[1, 0].numpy(), np.ones((2, 2), np.uint8))[:40, :32]).save(d / "b wide.png")
    rgb = np.repeat(images[2, 0].numpy()[:, :, None], 3, axis=2)
    Image.fromarray(rgb).resize((50, 60)).save(d / "c.jpg", quality=95)
    (d / "d_truncated.png").write_bytes((d / "a.png").read_bytes()[:70])
    (d / "e_text.png").write_text("not an image")
    (d / "f_notes.txt").write_text("some notes")
    return d


def _read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def _expected(run, path):
    from core.inference import load_image_tensor, load_run_model, predict_tensor

    lm = load_run_model(run)
    result = predict_tensor(lm, load_image_tensor(lm, path).unsqueeze(0))
    return lm.class_names[int(result["pred"][0])], result["probs"][0]


def test_predict_mixed_folder(run_root, mixed, tmp_path, capsys):
    run, root = run_root
    out = tmp_path / "out"
    code = main(["predict", run.id, str(mixed), "--out", str(out), "--runs-dir", str(root)])
    assert code == 0
    header, rows = _read(out / "predictions.csv")
    assert header == HEADER
    assert [r["file"] for r in rows] == [str(mixed / n) for n in
                                         ("a.png", "b wide.png", "c.jpg", "d_truncated.png", "e_text.png", "f_notes.txt")]
    good, bad = rows[:3], rows[3:]
    for r in good:
        assert r["error"] == ""
        p = np.array([float(r["p_absent"]), float(r["p_present"])])
        assert p.sum() == pytest.approx(1.0, abs=1e-6)
        label, probs = _expected(run, r["file"])
        assert r["label"] == label
        np.testing.assert_allclose(p, probs, atol=1e-6)
        assert r["confidence"] in ("high", "moderate", "low")
        q = np.clip(probs.astype(np.float64), 1e-12, 1)
        assert float(r["entropy"]) == pytest.approx(float(-(q * np.log(q)).sum()), abs=1e-5)
    assert "truncated" in bad[0]["error"]
    assert "not an image" in bad[1]["error"] and "not an image" in bad[2]["error"]
    for r in bad:
        assert r["label"] == r["p_absent"] == r["p_present"] == r["entropy"] == r["confidence"] == ""
    printed = capsys.readouterr()
    assert "6 images, 3 failed" in printed.out and str(out / "predictions.csv") in printed.out
    assert "predict" in printed.err  # the tqdm bar goes to stderr
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv"]


def test_predict_with_gradcam_overlays(run_root, mixed, tmp_path):
    run, root = run_root
    out = tmp_path / "out"
    assert main(["predict", run.id, str(mixed), "--out", str(out), "--runs-dir", str(root), "--explain", "gradcam"]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["0001_a_gradcam.png", "0002_b_wide_gradcam.png", "0003_c_gradcam.png"]
    sizes = {n: Image.open(out / n).size for n in pngs}
    # Overlays are drawn on the original image, at its size.
    assert sizes == {"0001_a_gradcam.png": (28, 28), "0002_b_wide_gradcam.png": (32, 40), "0003_c_gradcam.png": (50, 60)}
    assert all(Image.open(out / n).mode == "RGB" for n in pngs)
    # An overlay is not the plain image: the heatmap colours are in it.
    a = np.asarray(Image.open(out / "0001_a_gradcam.png")).astype(int)
    assert np.abs(a[..., 0] - a[..., 2]).max() > 30


def test_predict_zip_and_missing_paths(run_root, tmp_path):
    run, root = run_root
    images, _, _ = square_images(3, seed=5)
    zpath = tmp_path / "batch.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(2):
            img = tmp_path / f"z{i}.png"
            Image.fromarray(images[i, 0].numpy()).save(img)
            zf.write(img, f"scans/z{i}.png")
        zf.writestr("scans/readme.txt", "hello")
        zf.writestr("__MACOSX/scans/._z0.png", "junk")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "out"
    code = main(["predict", run.id, str(zpath), str(tmp_path / "missing.png"), str(broken), "--out", str(out),
                 "--runs-dir", str(root), "--tta", "--calibrated"])
    assert code == 0
    _, rows = _read(out / "predictions.csv")
    # Zip entries in archive order, macOS clutter left out, then the other paths as given.
    assert [r["file"] for r in rows] == ["batch.zip:scans/z0.png", "batch.zip:scans/z1.png", "batch.zip:scans/readme.txt",
                                         str(tmp_path / "missing.png"), str(broken)]
    by_file = {r["file"]: r for r in rows}
    assert by_file["batch.zip:scans/readme.txt"]["error"]
    assert by_file[str(tmp_path / "missing.png")]["error"] == "no such file or folder"
    assert by_file[str(broken)]["error"].startswith("unreadable zip")

    from core.inference import load_image_tensor, load_run_model, predict_tensor

    lm = load_run_model(run)
    for i in range(2):
        r = by_file[f"batch.zip:scans/z{i}.png"]
        assert r["error"] == ""
        want = predict_tensor(lm, load_image_tensor(lm, tmp_path / f"z{i}.png").unsqueeze(0), tta=True, calibrated=True)
        np.testing.assert_allclose([float(r["p_absent"]), float(r["p_present"])], want["probs"][0], atol=1e-6)
        assert r["label"] == CLASS_NAMES[int(want["pred"][0])]


def test_predict_default_out_dir_and_errors(run_root, tmp_path, monkeypatch, capsys):
    run, root = run_root
    images, _, _ = square_images(1, seed=2)
    img = tmp_path / "one.png"
    Image.fromarray(images[0, 0].numpy()).save(img)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", run.id, str(img), "--runs-dir", str(root)]) == 0
    assert (tmp_path / f"predictions-{run.id}" / "predictions.csv").is_file()
    assert main(["predict", "nope", str(img), "--runs-dir", str(root)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", run.id, str(empty), "--runs-dir", str(root)]) == 2
    assert "no files found" in capsys.readouterr().err
    assert main(["predict", run.id, str(img), "--explain", "lime"]) == 2
    assert "invalid choice: 'lime'" in capsys.readouterr().err


def test_parser_choices_match_the_engine():
    import subprocess
    import sys

    from core.cli import export as cli_export, predict as cli_predict
    from core.explain import list_methods
    from core.export import FORMATS

    assert list(cli_predict.EXPLAIN_METHODS) == list_methods()
    assert tuple(cli_export.EXPORT_FORMATS) == FORMATS
    # Building the parser (done for every command) must not pay for importing torch.
    code = "import sys; from core.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(cli_predict.__file__).rsplit("/core/", 1)[0])
    assert out.stdout.strip() == "False"


def test_csv_cells_are_never_formulas():
    from core.cli.predict import csv_cell

    assert csv_cell("=HYPERLINK(1).png") == "'=HYPERLINK(1).png"
    assert csv_cell("@x") == "'@x" and csv_cell("-1+2") == "'-1+2"
    assert csv_cell("scan.png") == "scan.png" and csv_cell("0.12500000") == "0.12500000" and csv_cell(None) == ""


def test_safe_stem():
    assert safe_stem("/data/x ray (1).png") == "x_ray_1"
    assert safe_stem("batch.zip:scans/deep/ü.png") == "image"
    assert safe_stem("a/.hidden") == "hidden"
    assert len(safe_stem("a" * 200 + ".png")) == 60
