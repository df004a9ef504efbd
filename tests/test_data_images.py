"""decode_image and image_to_tensor on hostile, odd and ordinary files made in the test."""

from __future__ import annotations

import functools
import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from core.data import MAX_PIXELS, decode_image, extract_zip, image_to_tensor, is_grayscale
from core.errors import ConfigError, DataError


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(mode: str = "RGB", size=(64, 64), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=None)
def bomb_png(side: int) -> bytes:
    """A complete, valid 1-bit PNG of side x side black pixels, about 110 KB for 30000 px.

    The zlib stream is one compressed block of 500 rows repeated: after a full flush deflate
    forgets its history, so the block's bytes are the same every time and are built once.
    """
    assert side % 500 == 0
    rows = b"\x00" * ((1 + (side + 7) // 8) * 500)  # per row: filter byte + packed bits
    z = zlib.compressobj(9)
    first = z.compress(rows) + z.flush(zlib.Z_FULL_FLUSH)  # starts with the zlib header
    block = z.compress(rows) + z.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(side // 500):
        adler = zlib.adler32(rows, adler)
    body = first + block * (side // 500 - 1) + b"\x03\x00" + struct.pack(">I", adler)  # empty final block
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def test_bomb_fixture_is_a_real_png():
    data = bomb_png(1000)
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.size == (1000, 1000) and img.getextrema() == (0, 0)


# --- refusals -------------------------------------------------------------------------------


def test_non_image_bytes_with_png_name(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"this is a text file, not a picture\n" * 20)
    with pytest.raises(DataError, match=r"^scan\.png is not an image that can be read"):
        decode_image(path)
    with pytest.raises(DataError, match="is not an image"):
        decode_image(path.read_bytes(), name="upload.png")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="could not be opened"):
        decode_image(tmp_path / "nope.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(fmt):
    data = encode(noise("RGB", (96, 96)), fmt)
    assert decode_image(data).size == (96, 96)  # the complete file is fine
    with pytest.raises(DataError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_from_the_header():
    data = bomb_png(30000)  # 900 megapixels
    assert len(data) < 200_000
    with pytest.raises(DataError, match="enormous|megapixels"):
        decode_image(data)


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    # 64 megapixels: above our 40 MP default, below Pillow's own warning threshold, so
    # only our check can stop it; a load() would fail the test with another message.
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with pytest.raises(DataError, match=r"8000 x 8000 pixels, more than the limit of 40 megapixels"):
        decode_image(bomb_png(8000), name="big.png")
    assert MAX_PIXELS == 40_000_000


def test_max_pixels_argument():
    data = encode(noise("L", (100, 100)))
    with pytest.raises(DataError, match="100 x 100 pixels"):
        decode_image(data, max_pixels=5_000)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


# --- conversions ----------------------------------------------------------------------------


def test_sixteen_bit_is_stretched_to_8_bit():
    arr = np.linspace(1000, 4000, 64 * 32).reshape(32, 64).astype(np.uint16)  # 12-bit range used
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = decode_image(encode(img))
    a = np.asarray(out)
    assert out.mode == "L"
    assert a.min() == 0 and a.max() == 255
    assert a[0, 0] == 0 and a[-1, -1] == 255
    assert abs(int(a[16, 0]) - 128) <= 2  # the middle maps to the middle
    assert (np.diff(a.ravel().astype(int)) >= 0).all()  # order is kept


def test_32_bit_integer_tiff():
    arr = np.array([[-5, 0], [10, 95]], dtype=np.int32)
    out = decode_image(encode(Image.fromarray(arr), "TIFF"))
    assert out.mode == "L"
    assert np.asarray(out).tolist() == [[0, 13], [38, 255]]


def test_cmyk_becomes_rgb():
    out = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "TIFF"))
    assert out.mode == "RGB" and out.getpixel((3, 3)) == (255, 0, 0)


def test_palette_becomes_rgb_and_transparency_is_black():
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30, 250, 250, 250] + [0] * (256 * 3 - 9))
    img.putpixel((0, 0), 2)
    out = decode_image(encode(img))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (10, 200, 30) and out.getpixel((0, 0)) == (250, 250, 250)
    out = decode_image(encode(img, transparency=2))  # index 2 is transparent
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 1)) == (10, 200, 30)


def test_alpha_is_composited_on_black():
    out = decode_image(encode(Image.new("RGBA", (4, 4), (200, 100, 50, 128))))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == tuple((c * 128 + 127) // 255 for c in (200, 100, 50))
    out = decode_image(encode(Image.new("LA", (4, 4), (200, 255))))
    assert out.mode == "L" and out.getpixel((0, 0)) == 200
    out = decode_image(encode(Image.new("LA", (4, 4), (200, 0))))
    assert out.getpixel((0, 0)) == 0


def test_one_bit_and_grayscale_stay_single_channel(tmp_path):
    img = Image.new("1", (9, 9), 1)
    img.putpixel((0, 0), 0)
    (tmp_path / "x.bmp").write_bytes(encode(img, "BMP"))
    out = decode_image(tmp_path / "x.bmp")
    assert out.mode == "L" and out.getpixel((0, 0)) == 0 and out.getpixel((5, 5)) == 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(data)
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 0, 0)


def test_multi_page_tiff_uses_first_page():
    pages = [Image.new("L", (6, 6), v) for v in (10, 20, 30)]
    out = decode_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert out.mode == "L" and out.getpixel((2, 2)) == 10


# --- image_to_tensor ------------------------------------------------------------------------


def test_image_to_tensor_shapes_and_channels():
    gray = Image.new("L", (40, 30), 77)
    t = image_to_tensor(gray, 28, 1)
    assert t.dtype == torch.uint8 and t.shape == (1, 28, 28) and (t == 77).all()
    t3 = image_to_tensor(gray, 28, 3)
    assert t3.shape == (3, 28, 28) and (t3 == 77).all()
    red = Image.new("RGB", (50, 50), (255, 0, 0))
    assert image_to_tensor(red, 16, 3)[:, 0, 0].tolist() == [255, 0, 0]
    assert image_to_tensor(red, 16, 1)[0, 0, 0].item() == 76  # ITU-R 601-2 luminance of red
    assert image_to_tensor(Image.new("YCbCr", (8, 8), (128, 128, 128)), 8, 3).shape == (3, 8, 8)


def test_image_to_tensor_antialiases_when_shrinking():
    checker = ((np.indices((56, 56)).sum(axis=0) % 2) * 255).astype(np.uint8)
    t = image_to_tensor(Image.fromarray(checker), 28, 1).float()
    assert (t - 127.5).abs().max() < 20  # averaged, not aliased to 0/255


def test_image_to_tensor_rejects_bad_settings():
    with pytest.raises(ConfigError, match="channels"):
        image_to_tensor(Image.new("L", (4, 4)), 4, 2)
    with pytest.raises(ConfigError, match="size"):
        image_to_tensor(Image.new("L", (4, 4)), 0, 1)


def test_is_grayscale():
    assert is_grayscale(Image.new("L", (3, 3)))
    assert is_grayscale(Image.new("RGB", (3, 3), (9, 9, 9)))
    assert not is_grayscale(Image.new("RGB", (3, 3), (9, 9, 10)))


# --- property tests: never anything but an image or a DataError -------------------------------

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*"]
VALID = [
    encode(noise("RGB", (12, 12)), "PNG"),
    encode(noise("L", (12, 12)), "JPEG"),
    encode(noise("RGB", (12, 12)), "BMP"),
    encode(noise("L", (12, 12)), "TIFF"),
    encode(noise("RGB", (12, 12)), "GIF"),
]


def check_decodes_or_refuses(data: bytes) -> None:
    try:
        img = decode_image(data)
    except DataError:
        return
    assert img.mode in ("L", "RGB") and img.size[0] * img.size[1] <= MAX_PIXELS


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF
@settings(max_examples=150, deadline=None)
@given(st.sampled_from(MAGIC), st.binary(max_size=600))
def test_random_bytes_never_crash_decode(prefix, body):
    check_decodes_or_refuses(prefix + body)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8), st.integers(0, 10**6))
def test_mutated_images_never_crash_decode(valid, edits, cut):
    data = bytearray(valid)
    for pos, value in edits:
        data[pos % len(data)] = value
    check_decodes_or_refuses(bytes(data[: max(1, cut % (len(data) + 1))]))


def _zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/a/1.png", VALID[0])
        zf.writestr("data/b/1.png", VALID[0])
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=400).map(lambda b: b"PK\x03\x04" + b),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6).map(
        lambda edits: _mutate(_zip_bytes(), edits)
    ),
))
def test_random_zips_never_crash_the_importer(data):
    from core.data import load_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp)
        try:
            files = extract_zip(data, outside / "target")
        except DataError:
            files = []
        assert all(outside / "target" in f.parents for f in files)
        assert sorted(p.name for p in outside.iterdir()) == ["target"]
        src = outside / "upload.zip"
        src.write_bytes(data)
        try:
            ds = load_image_folder(src, size=8)
        except DataError:
            return
        assert ds.num_classes >= 2


def _mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out)
