"""Input policy: every Pillow mode becomes 8-bit RGB the documented way."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from icmcodec.imageio import ImageInputError, atomic_write, load_rgb


def encoded(im, fmt="PNG", **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgba_composited_over_white():
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 255)  # opaque red
    a[0, 1] = (0, 0, 0, 0)  # transparent -> white
    a[1, 0] = (0, 0, 0, 128)  # half black over white
    out = load_rgb(encoded(Image.fromarray(a, "RGBA")))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert abs(int(out[1, 0, 0]) - 127) <= 1


def test_gray_la_and_palette_transparency():
    g = load_rgb(encoded(Image.fromarray(np.array([[0, 200]], np.uint8), "L")))
    assert g.shape == (1, 2, 3) and g[0, 1].tolist() == [200, 200, 200]
    la = Image.fromarray(np.array([[[10, 0], [10, 255]]], np.uint8), "LA")
    assert load_rgb(encoded(la))[0].tolist() == [[255] * 3, [10] * 3]
    p = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    p.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    p.info["transparency"] = 0
    assert load_rgb(encoded(p, transparency=0))[0].tolist() == [[255, 255, 255], [0, 255, 0]]


def test_16_bit_gray_scaled_to_8():
    a = np.array([[0, 257 * 100, 65535]], np.uint16)
    out = load_rgb(encoded(Image.fromarray(a)))
    assert out[0, :, 0].tolist() == [0, 100, 255]


def test_exif_rotation_applied():
    a = np.zeros((2, 3, 3), np.uint8)
    a[0, 0] = 255
    im = Image.fromarray(a, "RGB")
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 cw to display
    out = load_rgb(encoded(im, "JPEG", exif=exif, quality=100))
    assert out.shape == (3, 2, 3)


def test_cmyk_and_one_pixel():
    assert load_rgb(encoded(Image.new("CMYK", (1, 1), (0, 0, 0, 0)), "JPEG")).shape == (1, 1, 3)


def test_bad_inputs(tmp_path):
    with pytest.raises(ImageInputError):
        load_rgb(b"definitely not an image")
    with pytest.raises(ImageInputError):
        load_rgb(tmp_path / "missing.png")
    truncated = encoded(Image.new("RGB", (64, 64), (1, 2, 3)))[:60]
    with pytest.raises(ImageInputError):
        load_rgb(truncated)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    atomic_write(tmp_path / "ok.bin", b"123")
    assert (tmp_path / "ok.bin").read_bytes() == b"123"
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "bad.bin", object())
    assert os.listdir(tmp_path) == ["ok.bin"]


def test_atomic_write_gives_outputs_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "out.png", b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o644
