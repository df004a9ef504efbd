"""``python -m core predict`` checks sizes and headers before reading: a file of several GB named
``.png`` and a zip entry declaring gigabytes are refused without being read, memory stays small,
and the other images are still labelled.

Before: every file and zip entry was read whole first (``Path.read_bytes`` / ``ZipFile.read``),
so a 3 GB file named .png cost over 3 GB of memory.
"""

from __future__ import annotations

import csv
import io
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.inputs import iter_image_sources
from helpers_runs import make_run, square_images

REPO = Path(__file__).resolve().parent.parent
GB = 1024**3

# Runs two command lines in one process and prints the peak memory (ru_maxrss, KiB on Linux)
# after each. The first labels only the good images, so torch, the model and the decoders are
# loaded (torch alone maps about 500 MB); the rise during the second is what the hostile
# inputs cost. Reading a 3 GB file whole would raise it by 3 GB.
_MEASURED = """
import resource, sys
from core.cli import main
args = sys.argv[1:]
cut = args.index("--then")
for part in (args[:cut], args[cut + 1:]):
    code = main(part)
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
"""


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "runs"
    return make_run(root, "medvcnn", steps=8), root


def _png_bytes(seed: int) -> bytes:
    images, _, _ = square_images(2, seed=seed)
    buf = io.BytesIO()
    Image.fromarray(images[0, 0].numpy()).save(buf, "PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR chunk claiming ``width`` x ``height`` 8-bit grey pixels and the
    start of an IDAT chunk claiming 100 MB of data (Pillow opens it; decoding would read on)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
            + struct.pack(">I", 100 * 1024**2) + b"IDAT")


def sparse_file(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk space beyond ``head`` (``truncate``)."""
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def zip_declaring(path: Path, entries: dict[str, bytes], huge: str, declared: int) -> Path:
    """A zip whose entry ``huge`` claims ``declared`` bytes in the central directory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")  # central directory headers
    while at != -1:
        name_len = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46:at + 46 + name_len].decode() == huge:
            struct.pack_into("<I", raw, at + 24, declared)  # uncompressed size
        at = raw.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo(huge).file_size == declared
    return path


@pytest.fixture
def hostile(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a_good.png").write_bytes(_png_bytes(1))
    sparse_file(d / "b_huge.png", 3 * GB, png_header(5000, 5000))  # a real header, then 3 GB
    sparse_file(d / "c_zeros.png", 4 * GB)  # nothing but zeros
    (d / "d_good.png").write_bytes(_png_bytes(2))
    z = zip_declaring(tmp_path / "batch.zip", {"scans/e_good.png": _png_bytes(3), "scans/f_huge.png": _png_bytes(4),
                                               "scans/g_good.png": _png_bytes(5)},
                      huge="scans/f_huge.png", declared=3 * GB)
    return d, z


def test_sizes_are_checked_before_reading(hostile):
    d, z = hostile
    items = [(name, error) for name, _source, error in iter_image_sources([d, z])]
    assert [Path(n.split(":")[-1]).name for n, _ in items] == [
        "a_good.png", "b_huge.png", "c_zeros.png", "d_good.png", "e_good.png", "f_huge.png", "g_good.png"]
    errors = dict(items)
    assert errors["batch.zip:scans/f_huge.png"] == (
        "f_huge.png declares 3.0 GB, more than the limit of 512 MB for one image file; it was not read")
    assert errors["batch.zip:scans/e_good.png"] is None  # the zip is not refused as a whole


def test_predict_refuses_huge_inputs_with_little_memory(run_root, hostile, tmp_path):
    run, root = run_root
    d, z = hostile
    good = tmp_path / "good"
    good.mkdir()
    for name in ("a_good.png", "d_good.png"):
        (good / name).write_bytes((d / name).read_bytes())
    out = tmp_path / "out"
    common = ["--runs-dir", str(root)]
    proc = subprocess.run([sys.executable, "-c", _MEASURED, "predict", run.id, str(good), "--out", str(tmp_path / "warm"),
                           *common, "--then", "predict", run.id, str(d), str(z), "--out", str(out), *common],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (warm_kb, warm_code), (peak_kb, code) = [tuple(map(int, line.split()[1:])) for line in proc.stdout.splitlines()
                                             if line.startswith("MAXRSS_KB")]
    assert warm_code == code == 0, proc.stdout + proc.stderr
    with open(out / "predictions.csv", newline="") as fh:
        rows = {Path(r["file"].split(":")[-1]).name: r for r in csv.DictReader(fh)}
    assert rows["b_huge.png"]["error"] == (
        "b_huge.png is 3.0 GB, more than the limit of 512 MB for one image file; export a smaller image "
        "(or a single frame) instead")
    assert rows["c_zeros.png"]["error"].startswith("c_zeros.png is 4.0 GB, more than the limit of 512 MB")
    assert rows["f_huge.png"]["error"].startswith("f_huge.png declares 3.0 GB")
    for name in ("a_good.png", "d_good.png", "e_good.png", "g_good.png"):
        assert rows[name]["error"] == "" and rows[name]["label"] in ("absent", "present")
        assert float(rows[name]["p_absent"]) + float(rows[name]["p_present"]) == pytest.approx(1, abs=1e-6)
    assert "7 images, 3 failed" in proc.stdout
    rise_mb = (peak_kb - warm_kb) / 1024
    assert rise_mb < 200, f"predicting over 10 GB of hostile inputs raised peak memory by {rise_mb:.0f} MB"


def test_header_checked_before_pixels_within_the_size_limit(tmp_path):
    from core.data import read_image
    from core.errors import DataError

    # 200 MB (under the file limit) whose header claims 7000 x 7000: refused from the header.
    big = sparse_file(tmp_path / "claims.png", 200 * 1024**2, png_header(7000, 7000))
    with pytest.raises(DataError, match=r"^claims.png is 7000 x 7000 pixels, more than the limit of 40 megapixels"):
        read_image(big)
    from PIL import Image as PILImage

    assert PILImage.open(big).size == (7000, 7000)  # the header itself is valid


def test_zip_entry_streamed_in_pieces_and_lying_headers_caught(tmp_path):
    # An entry over the in-memory spool size still decodes (spooled to disk), and equals the file.
    from core.data.inputs import SPOOL_IN_MEMORY

    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (4500, 4500), dtype=np.uint8)  # ~20 MB, incompressible
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "BMP")
    assert len(buf.getvalue()) > SPOOL_IN_MEMORY
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("noise.bmp", buf.getvalue())
    (name, source, error), = list(_decode_each(z))
    assert error is None and np.array_equal(source, noisy)
    # A header that declares fewer bytes than the entry holds: zipfile's CRC check refuses it.
    lying = zip_declaring(tmp_path / "lying.zip", {"x.png": _png_bytes(1)}, huge="x.png", declared=10)
    (_, _, error), = list(iter_image_sources([lying]))
    assert error is not None and error.startswith("x.png could not be read from the zip")


def _decode_each(path):
    from core.data import read_image

    for name, source, error in iter_image_sources([path]):
        yield name, (np.asarray(read_image(source, name=name).image) if error is None else None), error
