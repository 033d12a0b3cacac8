"""Conventional codecs as anchors, each at its best practical settings for RGB PSNR.

Every anchor turns H x W x 3 uint8 into real file bytes and back; the rate is always
``8 * len(bytes) / pixels``. Settings (and why):

* ``jpeg``: Pillow/libjpeg, 4:2:0, optimised Huffman tables. 4:2:0 is what JPEG files
  in the wild use; it beats 4:4:4 below about 1.5 bpp, the range that matters here.
* ``webp``: Pillow/libwebp lossy, ``method=6`` (slowest, best), 4:2:0 (the only option).
* ``avif``: Pillow/libavif (AV1), ``speed=6``, 4:4:4 (better RGB PSNR than 4:2:0 at the
  rates compared here).
* ``heic``: pillow-heif/libheif (x265), ``chroma=444``, preset ``medium`` (libheif's
  default preset is twice as slow for about 5% fewer bytes at equal PSNR).
* ``jxl``: imagecodecs/libjxl, ``effort=7`` (the libjxl default), quality as ``level``.

An anchor whose library is missing is reported as unavailable, never faked.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, features


@dataclass
class Anchor:
    name: str
    qualities: list[int]
    settings: dict
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]
    available: Callable[[], bool] = field(default=lambda: True)


def _pillow(fmt: str, **kw):
    def enc(rgb: np.ndarray, q: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, quality=q, **kw)
        return buf.getvalue()

    def dec(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    return enc, dec


def _heif_available() -> bool:
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        return True
    except ImportError:
        return False


def _jxl_available() -> bool:
    try:
        import imagecodecs

        return bool(imagecodecs.JPEGXL.available)
    except (ImportError, AttributeError):
        return False


def _jxl_encode(rgb: np.ndarray, q: int) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(rgb, level=q, effort=7))


def _jxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


QUALITIES = [5, 10, 20, 35, 50, 65, 80, 90]


def all_anchors() -> dict[str, Anchor]:
    jpeg = dict(optimize=True, subsampling="4:2:0")
    webp = dict(method=6)
    avif = dict(speed=6, subsampling="4:4:4")
    heic = dict(chroma=444, enc_params={"preset": "medium"})
    return {
        "jpeg": Anchor("jpeg", QUALITIES, jpeg, *_pillow("JPEG", **jpeg), available=lambda: features.check("jpg")),
        "webp": Anchor("webp", QUALITIES, webp, *_pillow("WEBP", **webp), available=lambda: features.check("webp")),
        "avif": Anchor("avif", QUALITIES, avif, *_pillow("AVIF", **avif), available=lambda: features.check("avif")),
        "heic": Anchor("heic", QUALITIES, heic, *_pillow("HEIF", **heic), available=_heif_available),
        "jxl": Anchor("jxl", QUALITIES, {"effort": 7}, _jxl_encode, _jxl_decode, available=_jxl_available),
    }


def pick_anchors(names: str) -> dict[str, Anchor]:
    """The comma-separated anchors that are available here; a missing library is
    reported on stderr and skipped, an unknown name stops the run."""
    import sys

    known, out = all_anchors(), {}
    if names.strip() in ("", "none"):
        return out
    for name in names.split(","):
        anchor = known.get(name)
        if anchor is None:
            raise SystemExit(f"unknown anchor {name!r} (one of: {', '.join(known)})")
        if not anchor.available():
            print(f"notice: {name} is not available here (library missing); skipped", file=sys.stderr)
            continue
        out[name] = anchor
    return out


def icm_qualities(codec, text: str | None, points: int = 9) -> list[float]:
    """icm qualities to measure: the comma-separated list given, or ``points`` evenly
    over the model's quality range."""
    if text:
        return [float(q) for q in text.split(",")]
    lo, hi = codec.quality_range
    return [float(q) for q in np.linspace(lo, hi, points)]
