"""Images as clinicians have them: EXIF orientation, 16-bit RGB at full depth, a stretch robust
to outlier pixels, and multi-page TIFFs that say which page was used (in the returned notes,
in ``predict``'s CSV and on Classify).

Before: a phone photo on its side was classified sideways; 12-bit values in a 16-bit RGB PNG
came out as 0..15 (Pillow keeps the high byte); three hot pixels squeezed a 16-bit scan into a
few grey levels (min-max stretch); a multi-page TIFF silently used page 1.
"""

from __future__ import annotations

import csv
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.data import image_to_tensor, read_image
from core.data.pixels import stretch_to_uint8
from core.errors import DataError


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB (3 channels) or RGBA (4) PNG, rows filtered with all five
    PNG filters in turn, so decoding exercises Pillow's unfiltering on 6- and 8-byte pixels."""
    h, w, c = arr.shape
    bpp = 2 * c
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * bpp).astype(np.int64)
    out = []
    for y in range(h):
        raw = rows[y]
        up = rows[y - 1] if y else np.zeros_like(raw)
        left = np.concatenate([np.zeros(bpp, np.int64), raw[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        kind = y % 5
        if kind == 0:
            f = raw
        elif kind == 1:
            f = raw - left
        elif kind == 2:
            f = raw - up
        elif kind == 3:
            f = raw - (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
            f = raw - pred
        out.append(bytes([kind]) + (f % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b"")


# --- EXIF orientation -------------------------------------------------------------------------


def _sideways() -> tuple[Image.Image, Image.Image]:
    """An upright 20 x 40 picture (red top, blue bottom) and the same stored on its side."""
    upright = Image.new("RGB", (20, 40), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 20, 20))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    return upright, stored


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt):
    upright, stored = _sideways()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    data = encode(stored, fmt, exif=exif, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    assert Image.open(io.BytesIO(data)).size == (40, 20)  # stored sideways
    out = read_image(data).image
    assert out.size == (20, 40)
    assert out.size == ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50
    # Classified as the upright picture would be.
    got = image_to_tensor(out, 28, 3).int()
    want = image_to_tensor(upright, 28, 3).int()
    assert (got - want).abs().max() <= (0 if fmt == "PNG" else 8)


def test_every_exif_orientation_turns_upright():
    upright = Image.fromarray(np.arange(6 * 4, dtype=np.uint8).reshape(4, 6) * 10)
    stored_for = {  # orientation -> how the upright image is stored
        2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    for value, method in stored_for.items():
        exif = Image.Exif()
        exif[0x0112] = value
        out = read_image(encode(upright.transpose(method), "PNG", exif=exif)).image
        assert np.array_equal(np.asarray(out), np.asarray(upright)), value


# --- 16-bit RGB and the stretch ---------------------------------------------------------------


def test_sixteen_bit_rgb_keeps_its_range():
    arr = np.zeros((8, 8, 3), dtype=np.uint16)
    arr[:, 4:6] = (2048, 4095, 0)  # 12-bit values, as a scanner writes them
    arr[:, 6:] = (4095, 2048, 1024)
    data = png16(arr)
    assert np.asarray(Image.open(io.BytesIO(data))).max() == 15  # what Pillow alone makes of it
    out = read_image(data).image
    a = np.asarray(out)
    assert out.mode == "RGB" and a.max() == 255
    assert a[0, 0].tolist() == [0, 0, 0]
    assert a[0, 4].tolist() == [128, 255, 0] and a[0, 6].tolist() == [255, 128, 64]


def test_sixteen_bit_rgb_exact_through_all_png_filters():
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 4096, size=(11, 13, 3)).astype(np.uint16)
    a = np.asarray(read_image(png16(arr)).image)
    assert a.tolist() == stretch_to_uint8(arr).tolist()  # the full 16-bit samples reached the stretch
    rgba = np.concatenate([arr, np.full((11, 13, 1), 65535, np.uint16)], axis=2)
    assert np.asarray(read_image(png16(rgba)).image).tolist() == a.tolist()  # opaque alpha changes nothing


def test_sixteen_bit_rgb_tiff_keeps_its_range():
    tifffile = pytest.importorskip("tifffile", reason="writes the 16-bit RGB TIFF (Pillow cannot)")
    arr = np.zeros((6, 6, 3), dtype=np.uint16)
    arr[:3] = (4095, 2048, 0)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb")
    a = np.asarray(read_image(buf.getvalue()).image)
    assert a[0, 0].tolist() == [255, 128, 0] and a[5, 5].tolist() == [0, 0, 0]


def test_stretch_ignores_a_few_outlier_pixels():
    arr = np.tile(np.linspace(1000, 2000, 64), (64, 1)).astype(np.uint16)
    arr[0, :3] = 65535  # three hot pixels out of 4096
    a = np.asarray(read_image(encode(Image.fromarray(arr))).image).astype(int)
    assert a[10, 0] == 0 and a[10, -1] == 255
    assert abs(a[10, 32] - 129) <= 2  # min-max would put the middle at 2
    assert a[0, 0] == 255


def test_stretch_keeps_small_bright_objects_on_a_flat_background():
    arr = np.zeros((100, 100), dtype=np.uint16)
    arr[50, 50:55] = 4000  # 0.05 % of the pixels: above the 99.5th percentile
    a = np.asarray(read_image(encode(Image.fromarray(arr))).image)
    assert a[50, 50] == 255 and a[0, 0] == 0


# --- multi-page TIFF --------------------------------------------------------------------------


def _pages() -> bytes:
    pages = [Image.new("L", (6, 6), v) for v in (10, 20, 30)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def test_multi_page_tiff_says_which_page():
    first = read_image(_pages())
    assert first.image.getpixel((2, 2)) == 10
    assert first.notes == ("this TIFF has 3 pages; page 1 was used",)
    second = read_image(_pages(), frame=2)
    assert second.image.getpixel((2, 2)) == 20 and second.notes == ("this TIFF has 3 pages; page 2 was used, as asked",)
    with pytest.raises(DataError, match=r"^scan.tif has 3 pages, so there is no page 4; choose one from 1 to 3$"):
        read_image(_pages(), name="scan.tif", frame=4)
    assert read_image(encode(Image.new("L", (6, 6), 5), "TIFF")).notes == ()  # one page: nothing to say


def test_predict_writes_the_page_note(tmp_path):
    from core.cli import main
    from helpers_runs import make_run

    root = tmp_path / "runs"
    run = make_run(root, "medvcnn", steps=4)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pages.tif").write_bytes(_pages())
    Image.new("L", (28, 28), 40).save(tmp_path / "in" / "plain.png")
    out = tmp_path / "out"
    assert main(["predict", run.id, str(tmp_path / "in"), "--out", str(out), "--runs-dir", str(root)]) == 0
    with open(out / "predictions.csv", newline="") as fh:
        rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(fh)}
    assert rows["pages.tif"]["note"] == "this TIFF has 3 pages; page 1 was used" and rows["pages.tif"]["error"] == ""
    assert rows["plain.png"]["note"] == ""
    out2 = tmp_path / "out2"
    assert main(["predict", run.id, str(tmp_path / "in" / "pages.tif"), "--frame", "3", "--out", str(out2),
                 "--runs-dir", str(root)]) == 0
    with open(out2 / "predictions.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["note"] == "this TIFF has 3 pages; page 3 was used, as asked"


def test_classify_shows_the_page_note(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from helpers_runs import make_run
    from test_pages import APP, TIMEOUT, no_failure

    root = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(root))
    make_run(root, "medvcnn", steps=4)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    try:
        at.switch_page("../pages/classify.py").run()
        at.file_uploader[0].set_value([("pages.tif", _pages(), "image/tiff")]).run()
        no_failure(at)
        assert "pages.tif: this TIFF has 3 pages; page 1 was used" in [str(c.value) for c in at.caption]
    finally:
        from studio import ui

        ui._runner(ui._root()).stop()
