"""Reading input pictures and writing output pictures, torch-free.

Input policy (every mode Pillow opens is turned into 8-bit RGB, H x W x 3 uint8):

* EXIF orientation is applied first, so the coded picture is the one a viewer shows.
* 16-bit and 32-bit grayscale (``I;16``, ``I``) are scaled to 8 bits by rounding
  ``v / 257`` (16-bit) or clipping (``I``, ``F``), then replicated to RGB.
* 8-bit grayscale, palette, CMYK, YCbCr, LAB are converted by Pillow to RGB.
* Alpha (``RGBA``, ``LA``, ``PA``, palette transparency) is *composited over white*:
  the codec codes what a viewer would see on a white page; alpha itself is not coded.
* 16-bit-per-channel RGB PNGs (which Pillow opens as ``RGB`` after its own reduction,
  or as ``I;16`` variants) are reduced to 8 bits.

Outputs are written to a temporary name in the target folder and renamed into place
(:func:`atomic_write`), so a failed run never leaves a half-written file.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}

# Hard limit on the pixel count of an input image, checked from the header before
# the pixels are decoded (the bitstream repeats the limit for coded sizes).
MAX_PIXELS = 1 << 26  # 67 megapixels, e.g. 8192 x 8192
MAX_SIDE = 1 << 16


class ImageInputError(ValueError):
    """The input is not a picture icm can read."""


def check_size(w: int, h: int) -> None:
    """The limits of the format, each with its own message."""
    if w < 1 or h < 1:
        raise ImageInputError("image has zero size")
    if max(w, h) > MAX_SIDE:
        raise ImageInputError(f"image is {w}x{h}, over the limit of {MAX_SIDE} pixels a side")
    if w * h > MAX_PIXELS:
        raise ImageInputError(f"image is {w}x{h}, over the limit of {MAX_PIXELS} pixels")


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def not_regular(path: str | Path) -> str | None:
    """Why ``path`` is no file icm reads, or None for a regular file (or a folder, or a
    path that is not there: opening it says so). Checked with ``os.stat`` before any
    open, because opening a named pipe with no writer, or reading a device, can wait
    forever; ``-`` (stdin) is the one way to stream into icm."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")
    return f"not a regular file ({kind}); icm streams only from '-' (stdin)"


def open_image(src: str | Path | bytes) -> Image.Image:
    """Open and validate an image lazily: size limits checked before pixel decoding.

    Pillow's own decompression-bomb guard (a warning above 89 M pixels, an exception
    above twice that) is replaced by icm's limits, checked from the header: one rule,
    one message, and no warning printed to stderr. A path that is not a regular file
    (a pipe, a device) is refused before it is opened."""
    if isinstance(src, (str, Path)) and (why := not_regular(src)) is not None:
        raise ImageInputError(why)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _open_unguarded(src)
    except FileNotFoundError:
        raise ImageInputError(f"no such file: {src}") from None
    except IsADirectoryError:
        raise ImageInputError("is a folder, not a picture") from None
    except PermissionError:
        raise ImageInputError("cannot read (permission denied)") from None
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise ImageInputError(f"not a readable image ({e.__class__.__name__})") from None
    check_size(*im.size)
    return im


def _open_unguarded(src):
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # icm checks its own limits right after
    try:
        return Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Apply the input policy above; returns H x W x 3 uint8."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _to_rgb8(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as e:
        raise ImageInputError(f"image data is damaged ({e.__class__.__name__}: {e})") from None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im, dtype=np.uint16).astype(np.float64)
        g = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        scale = 1.0 / 257.0 if a.max(initial=0) > 255 else 1.0
        g = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or im.mode == "RGBA":
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def load_rgb(src: str | Path | bytes) -> np.ndarray:
    """Open ``src`` (path or bytes) and return H x W x 3 uint8 RGB."""
    return to_rgb8(open_image(src))


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode any new file gets
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def save_rgb_png(path: str | Path, rgb: np.ndarray) -> None:
    atomic_write(path, png_bytes(Image.fromarray(rgb, "RGB")))
