"""Robust decoding: each awkward or bad file is made here and its exact outcome asserted."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from synthmix.core.errors import DataError
from synthmix.data.images import decode, load_rgb


def test_rgba_composited_on_background_not_dropped(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., :3] = (10, 20, 30)      # the colour transparent pixels store (would show as near-black)
    a[:4, :, 3] = 0                # top half fully transparent
    a[4:, :, :] = (200, 0, 0, 255)  # bottom half opaque red
    Image.fromarray(a, "RGBA").save(tmp_path / "x.png")
    d = decode(tmp_path / "x.png")
    out = np.asarray(d.image)
    assert d.mode == "RGBA" and d.had_alpha and d.image.mode == "RGB"
    assert (out[:4] == 255).all()                      # white default background
    assert (out[4:] == (200, 0, 0)).all()
    green = np.asarray(load_rgb(tmp_path / "x.png", background=(0, 255, 0)))
    assert (green[:4] == (0, 255, 0)).all()


def test_la_half_transparent_blends(tmp_path):
    a = np.zeros((4, 4, 2), np.uint8)
    a[..., 0] = 0
    a[..., 1] = 128  # half transparent black on white -> mid grey
    Image.fromarray(a, "LA").save(tmp_path / "la.png")
    out = np.asarray(load_rgb(tmp_path / "la.png"))
    assert abs(int(out[0, 0, 0]) - 127) <= 1 and (out[..., 0] == out[..., 1]).all()


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (6, 6), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, 1 blue
    p.paste(1, (0, 0, 3, 6))
    p.save(tmp_path / "opaque.png")
    out = np.asarray(load_rgb(tmp_path / "opaque.png"))
    assert (out[:, :3] == (0, 0, 255)).all() and (out[:, 3:] == (255, 0, 0)).all()
    p.save(tmp_path / "transp.png", transparency=0)  # red becomes transparent
    d = decode(tmp_path / "transp.png")
    out = np.asarray(d.image)
    assert d.mode == "P" and d.had_alpha
    assert (out[:, 3:] == 255).all() and (out[:, :3] == (0, 0, 255)).all()


def test_grey_and_cmyk(tmp_path):
    Image.new("L", (5, 5), 77).save(tmp_path / "g.png")
    assert (np.asarray(load_rgb(tmp_path / "g.png")) == 77).all()
    Image.new("CMYK", (5, 5), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    d = decode(tmp_path / "c.jpg")
    r, g, b = np.asarray(d.image).reshape(-1, 3).mean(0)
    assert d.mode == "CMYK" and r > 200 and g < 60 and b < 60  # cyan+magenta-free: red


def test_16bit_png_scaled_not_clipped(tmp_path):
    a = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16).repeat(2, 0)
    Image.fromarray(a).save(tmp_path / "deep.png")
    d = decode(tmp_path / "deep.png")
    assert d.mode.startswith("I")
    out = np.asarray(d.image)[0, :, 0]
    assert out.tolist() == [0, 4, 128, 255]  # clipping would give [0, 255, 255, 255]


def test_float_tiff_scaled_by_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "unit.tif")
    assert np.asarray(load_rgb(tmp_path / "unit.tif"))[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[-10.0, 0.0, 10.0]], np.float32)).save(tmp_path / "wide.tif")
    assert np.asarray(load_rgb(tmp_path / "wide.tif"))[0, :, 0].tolist() == [0, 128, 255]


def test_exif_rotated_jpeg_is_upright(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide x 20 high, left half white
    a[:, :20] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    d = decode(tmp_path / "phone.jpg")
    assert d.exif_rotated and (d.width, d.height) == (20, 40)
    out = np.asarray(d.image).mean(axis=(1, 2))
    assert out[:15].mean() > 200 and out[-15:].mean() < 50  # the white half is now on top


def test_truncated_jpeg_is_a_data_error(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.jpg") as im:  # opening alone does not notice
        assert im.size == (64, 64)
    with pytest.raises(DataError, match="truncated") as e:
        decode(tmp_path / "cut.jpg")
    assert e.value.path.endswith("cut.jpg")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty file \(0 bytes\)") as e:
        decode(tmp_path / "empty.png")
    assert e.value.path.endswith("empty.png")


def test_non_image_with_image_extension(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels")
    with pytest.raises(DataError, match="not an image") as e:
        decode(tmp_path / "notes.jpg")
    assert "notes.jpg" in str(e.value)


def _png_with_declared_size(path, width, height):
    """A tiny real PNG whose header claims width x height (a decompression bomb's header)."""
    Image.new("L", (1, 1), 0).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr: ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_decompression_bomb_guard(tmp_path):
    _png_with_declared_size(tmp_path / "bomb.png", 50_000, 50_000)  # 2.5 gigapixels declared
    with pytest.raises(DataError, match="decompression-bomb guard") as e:
        decode(tmp_path / "bomb.png")
    assert e.value.path.endswith("bomb.png") and "2,500,000,000" in str(e.value)
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="over the limit of 100"):
        decode(tmp_path / "small.png", max_pixels=100)
    assert decode(tmp_path / "small.png", max_pixels=400).width == 20


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read file"):
        decode(tmp_path / "nope.png")
