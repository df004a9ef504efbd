"""DICOM files read with pydicom: rescale, window, MONOCHROME1, frames; imported, trained on,
classified; patient-identifying tags never shown, logged or copied into run files.

Every file is made here with pydicom itself (Dataset + FileMetaDataset, uncompressed pixels).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is in requirements.txt; install it to read DICOM")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

from core.data import load_image_folder, read_image  # noqa: E402
from core.errors import DataError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PATIENT = "Zebedee^Quintessa"
PATIENT_ID = "PID-7761349"
BIRTH = "19610203"
SECRETS = (PATIENT, "Zebedee", "Quintessa", PATIENT_ID, BIRTH)


def make_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", slope=None, intercept=None,
               center=None, width=None, function: str | None = None, preamble: bool = True) -> Path:
    """Write an uncompressed DICOM file with identifying tags set to :data:`SECRETS`.

    Args:
        pixels: (rows, cols) or (frames, rows, cols) grey values (uint8, uint16 or int16), or
            (rows, cols, 3) uint8 for RGB.
        preamble: False writes no 128-byte preamble and no ``DICM`` (an old-style file).
    """
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT, PATIENT_ID, BIRTH
    ds.InstitutionName = "Zebedee Clinic"
    ds.Modality = "CT"
    colour = photometric in ("RGB", "YBR_FULL")
    if colour:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    else:
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if function:
        ds.VOILUTFunction = function
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=preamble)
    return path


def linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently of the studio's code."""
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y[x <= c - 0.5 - (w - 1) / 2] = 0
    y[x > c - 0.5 + (w - 1) / 2] = 255
    return np.rint(y).astype(np.uint8)


# --- pixel values -----------------------------------------------------------------------------


def test_rescale_then_window(tmp_path):
    stored = np.array([[0, 1000, 1024, 1064], [1264, 2000, 500, 3000]], dtype=np.uint16)
    path = make_dicom(tmp_path / "ct.dcm", stored, slope=1, intercept=-1024, center=40, width=400)
    out = read_image(path)
    assert out.image.mode == "L" and out.notes == ()
    hu = stored.astype(float) - 1024  # -1024 is air, 0 water, 40 soft tissue
    assert np.asarray(out.image).tolist() == linear_window(hu, 40, 400).tolist()
    assert np.asarray(out.image).tolist() == [[0, 87, 102, 128], [255, 255, 0, 255]]


def test_slope_and_signed_pixels(tmp_path):
    stored = np.array([[-1000, -500, 0, 250, 500]], dtype=np.int16)
    path = make_dicom(tmp_path / "s.dcm", stored, slope=2, intercept=0, center=0, width=1001)
    assert np.asarray(read_image(path).image).tolist() == linear_window(stored * 2.0, 0, 1001).tolist()


def test_voi_lut_functions(tmp_path):
    x = np.array([[0, 50, 100, 150, 200]], dtype=np.uint16)
    exact = read_image(make_dicom(tmp_path / "e.dcm", x, center=100, width=200, function="LINEAR_EXACT")).image
    assert np.asarray(exact).tolist() == [[0, 64, 128, 191, 255]]
    sigmoid = read_image(make_dicom(tmp_path / "g.dcm", x, center=100, width=200, function="SIGMOID")).image
    want = np.rint(255 / (1 + np.exp(-4 * (x.astype(float) - 100) / 200))).astype(int)
    assert np.asarray(sigmoid).tolist() == want.tolist()


def test_without_a_window_the_stretch_ignores_outliers(tmp_path):
    arr = np.tile(np.linspace(1000, 2000, 64), (64, 1)).astype(np.uint16)
    arr[0, :3] = 65535  # three hot pixels
    out = np.asarray(read_image(make_dicom(tmp_path / "n.dcm", arr)).image).astype(int)
    assert out[10, 0] == 0 and out[10, -1] == 255  # the anatomy spans the whole range
    assert abs(out[10, 32] - 129) <= 2
    assert out[0, 0] == 255  # the outliers saturate instead of squeezing the rest


def test_monochrome1_is_inverted(tmp_path):
    arr = np.array([[0, 100, 200], [300, 400, 500]], dtype=np.uint16)
    two = np.asarray(read_image(make_dicom(tmp_path / "m2.dcm", arr, photometric="MONOCHROME2")).image).astype(int)
    one = np.asarray(read_image(make_dicom(tmp_path / "m1.dcm", arr, photometric="MONOCHROME1")).image).astype(int)
    assert two.tolist() == [[0, 51, 102], [153, 204, 255]]
    assert one.tolist() == (255 - two).tolist()
    windowed = read_image(make_dicom(tmp_path / "w1.dcm", arr, photometric="MONOCHROME1", center=250, width=501))
    assert np.asarray(windowed.image).tolist() == (255 - linear_window(arr.astype(float), 250, 501)).tolist()


def test_rgb_dicom(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 30
    out = read_image(make_dicom(tmp_path / "c.dcm", rgb, photometric="RGB")).image
    assert out.mode == "RGB" and out.getpixel((2, 2)) == (200, 0, 30)


def test_multi_frame_uses_the_middle_frame_or_the_one_asked(tmp_path):
    frames = np.zeros((5, 6, 6), dtype=np.uint16)
    for k in range(5):
        frames[k, :, k] = 1000  # frame k has a bright column k
    path = make_dicom(tmp_path / "series.dcm", frames)
    middle = read_image(path)
    assert middle.notes == ("this DICOM file has 5 frames; frame 3 (the middle one) was used",)
    assert np.flatnonzero(np.asarray(middle.image)[0]).tolist() == [2]
    first = read_image(path, frame=1)
    assert first.notes == ("this DICOM file has 5 frames; frame 1 was used, as asked",)
    assert np.flatnonzero(np.asarray(first.image)[0]).tolist() == [0]
    with pytest.raises(DataError, match=r"^series.dcm has 5 frames, so there is no frame 9; choose a frame from 1 to 5$"):
        read_image(path, frame=9)


def test_found_by_preamble_or_extension(tmp_path):
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 10
    want = np.asarray(read_image(make_dicom(tmp_path / "ref.dcm", arr)).image).tolist()
    assert np.asarray(read_image(make_dicom(tmp_path / "1.2.840.10008.7", arr)).image).tolist() == want
    old_style = make_dicom(tmp_path / "old.dcm", arr, preamble=False)
    assert old_style.read_bytes()[128:132] != b"DICM"
    assert np.asarray(read_image(old_style).image).tolist() == want
    assert np.asarray(read_image(old_style.read_bytes(), name="upload.dcm").image).tolist() == want


def test_broken_dicom_is_refused_without_quoting_it(tmp_path):
    (tmp_path / "text.dcm").write_text(f"PatientName={PATIENT}")
    with pytest.raises(DataError) as err:
        read_image(tmp_path / "text.dcm")
    assert str(err.value).startswith("text.dcm is not a DICOM file that can be read")
    cut = make_dicom(tmp_path / "cut.dcm", np.ones((64, 64), np.uint16))
    cut.write_bytes(cut.read_bytes()[:-3000])
    with pytest.raises(DataError, match=r"^cut.dcm has pixel data that could not be read"):
        read_image(cut)
    no_pixels = Dataset()
    no_pixels.file_meta = FileMetaDataset()
    no_pixels.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    no_pixels.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    no_pixels.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    no_pixels.PatientName = PATIENT
    no_pixels.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"^report.dcm holds no image"):
        read_image(tmp_path / "report.dcm")
    for e in (err,):
        assert not any(s in str(e.value) for s in SECRETS)


# --- a folder of DICOM files: import, train, classify, nothing identifying kept -------------


def _square(k: int, present: bool, rng) -> np.ndarray:
    arr = rng.integers(0, 400, size=(28, 28)).astype(np.uint16)
    if present:
        top, left = rng.integers(0, 21, size=2)
        arr[top:top + 7, left:left + 7] = 3000
    return arr


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory) -> Path:
    """absent/ and present/ with 8 DICOM files each: some .dcm, some without extension."""
    root = tmp_path_factory.mktemp("dcm") / "scans"
    rng = np.random.default_rng(0)
    for name in ("absent", "present"):
        (root / name).mkdir(parents=True)
        for i in range(8):
            file = root / name / (f"{i}.dcm" if i % 2 else f"IM{i:04d}")
            make_dicom(file, _square(i, name == "present", rng), slope=1, intercept=-1024)
    return root


def test_folder_and_zip_of_dicom_files_import(dicom_folder, tmp_path):
    ds = load_image_folder(dicom_folder, size=28)
    assert ds.class_names == ["absent", "present"] and ds.channels == 1
    assert sum(int(ds.images[s].shape[0]) for s in ds.splits) == 16
    assert not ds.report.files_skipped
    assert "present/IM0000" in ds.report.files_read  # no extension, found by its preamble
    z = tmp_path / "scans.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(dicom_folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(dicom_folder.parent).as_posix())
    from_zip = load_image_folder(z, size=28)
    assert from_zip.class_names == ds.class_names
    assert all(np.array_equal(from_zip.images[s].numpy(), ds.images[s].numpy()) for s in ds.splits)


def test_train_and_classify_dicom_without_leaking_patient_tags(dicom_folder, tmp_path):
    runs = tmp_path / "runs"
    train = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", str(dicom_folder), "--model",
                            "bloodcnn", "--epochs", "1", "--size", "28", "--runs-dir", str(runs)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    run_dirs = [p.parent for p in runs.glob("*/meta.json")]
    assert len(run_dirs) == 1
    run_id = run_dirs[0].name
    out = tmp_path / "pred"
    series = make_dicom(tmp_path / "series.dcm", np.stack([_square(0, k == 1, np.random.default_rng(k))
                                                              for k in range(3)]))
    packed = tmp_path / "absent.zip"  # DICOM inside a zip, without extension: found by the preamble
    with zipfile.ZipFile(packed, "w") as zf:
        zf.write(dicom_folder / "absent" / "IM0000", "absent/IM0000")
    predict = subprocess.run([sys.executable, "-m", "core", "predict", run_id, str(dicom_folder / "present"),
                              str(series), str(packed), "--out", str(out), "--runs-dir", str(runs)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr
    with open(out / "predictions.csv", newline="") as fh:
        rows = {(r["file"] if ".zip:" in r["file"] else Path(r["file"]).name): r for r in csv.DictReader(fh)}
    assert len(rows) == 10 and all(r["error"] == "" and r["label"] in ("absent", "present") for r in rows.values())
    assert rows["absent.zip:absent/IM0000"]["error"] == ""
    assert rows["series.dcm"]["note"] == "this DICOM file has 3 frames; frame 2 (the middle one) was used"
    # Nothing identifying anywhere: run files (checkpoints, logs, metrics, eval), outputs, messages.
    written = [p for p in list(runs.rglob("*")) + list(out.rglob("*")) if p.is_file()]
    assert any(p.name == "best.pt" for p in written) and any(p.name == "predictions.csv" for p in written)
    for p in written:
        data = p.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} found in {p.name}"
    for text in (train.stdout, train.stderr, predict.stdout, predict.stderr):
        assert not any(secret in text for secret in SECRETS)


def test_classify_page_takes_a_dicom_upload(dicom_folder, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from helpers_runs import make_run
    from test_pages import APP, TIMEOUT, no_failure

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    make_run(root, "bloodcnn", steps=4)
    import ast

    page = ast.parse((REPO / "pages" / "classify.py").read_text())
    types = next(ast.literal_eval(n.value) for n in page.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "IMAGE_TYPES")
    assert "dcm" in types and "dicom" in types
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("../pages/classify.py").run()
    series = make_dicom(tmp_path / "series.dcm", np.stack([_square(0, True, np.random.default_rng(k)) for k in range(4)]))
    at.file_uploader[0].set_value([("series.dcm", series.read_bytes(), "application/dicom"),
                                   ("IM0001.dcm", (dicom_folder / "absent" / "1.dcm").read_bytes(), "application/dicom")]
                                  ).run()
    no_failure(at)
    captions = [str(c.value) for c in at.caption]
    assert "series.dcm: this DICOM file has 4 frames; frame 2 (the middle one) was used" in captions
    table = at.dataframe[0].value
    assert table["file"].tolist() == ["series.dcm", "IM0001.dcm"]
    shown = "\n".join(str(e.value) for e in list(at.markdown) + list(at.caption) + list(at.info) + list(at.error))
    assert not any(secret in shown for secret in SECRETS)
    from studio import ui

    ui._runner(ui._root()).stop()
