"""Task output files: what ``icm decode`` and ``icm analyze`` write, in formats standard
tools open. Every writer returns ``{suffix: bytes}`` and the caller writes each through
:func:`icmcodec.imageio.atomic_write`, so nothing is ever half-written.

| task | files | content |
|---|---|---|
| recon | ``.png`` | 8-bit RGB |
| semseg | ``.semseg.png`` + ``.semseg.json`` | palette PNG whose pixel values are class ids; JSON legend (id, name, colour) |
| depth | ``.depth.png`` (+ ``.depth.preview.png``) | 16-bit grayscale PNG, value = depth in millimetres (``DEPTH_SCALE`` units per metre), 0 = no depth; optional 8-bit colour preview |
| boundary | ``.boundary.png`` | 8-bit grayscale, ``round(255 * probability)`` |
| saliency | ``.saliency.png`` | 8-bit grayscale, ``round(255 * saliency)`` |
| normal | ``.normal.png`` | 8-bit RGB, ``round((n + 1) / 2 * 255)`` per axis of the unit normal |
| cls | ``.cls.json`` | ``{"label", "score", "top5": [{"label", "score"}, ...]}`` |
"""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from icmcodec.imageio import png_bytes

DEPTH_SCALE = 1000  # PNG units per metre: millimetres; 65.535 m at most


def _prob_png(p: np.ndarray) -> bytes:
    a = np.clip(np.round(np.asarray(p, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    return png_bytes(Image.fromarray(a, "L"))


# what each task's writer returns, main file first (``--skip-existing`` checks them all)
SUFFIXES = {"recon": (".png",), "semseg": (".semseg.png", ".semseg.json"),
            "depth": (".depth.png", ".depth.preview.png"), "boundary": (".boundary.png",),
            "saliency": (".saliency.png",), "normal": (".normal.png",), "cls": (".cls.json",)}


def write_recon(rgb: np.ndarray) -> dict[str, bytes]:
    return {".png": png_bytes(Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB"))}


def write_semseg(ids: np.ndarray, class_names: list[str], palette: list[tuple[int, int, int]]) -> dict[str, bytes]:
    ids = np.asarray(ids)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= len(class_names):
        raise ValueError("class id outside the label set")
    im = Image.fromarray(ids.astype(np.uint8), "P")
    flat = [c for rgb in palette for c in rgb]
    im.putpalette(flat + [0] * (768 - len(flat)))
    legend = {"classes": [{"id": i, "name": n, "color": list(palette[i])} for i, n in enumerate(class_names)]}
    return {".semseg.png": png_bytes(im), ".semseg.json": (json.dumps(legend, indent=1) + "\n").encode()}


def write_depth(depth_m: np.ndarray, preview: bool = True) -> dict[str, bytes]:
    d = np.asarray(depth_m, dtype=np.float64)
    v = np.clip(np.round(d * DEPTH_SCALE), 0, 65535).astype(np.uint16)
    out = {".depth.png": png_bytes(Image.fromarray(v))}
    if preview:
        valid = v > 0
        lo, hi = (float(d[valid].min()), float(d[valid].max())) if valid.any() else (0.0, 1.0)
        t = np.clip((d - lo) / max(hi - lo, 1e-9), 0, 1)
        # near = warm, far = cool: a simple two-colour ramp every viewer shows
        rgb = np.stack([255 * (1 - t), 80 + 100 * t * (1 - t), 255 * t], -1)
        rgb[~valid] = 0
        out[".depth.preview.png"] = png_bytes(Image.fromarray(rgb.astype(np.uint8), "RGB"))
    return out


def write_boundary(prob: np.ndarray) -> dict[str, bytes]:
    return {".boundary.png": _prob_png(prob)}


def write_saliency(sal: np.ndarray) -> dict[str, bytes]:
    return {".saliency.png": _prob_png(sal)}


def write_normal(normals: np.ndarray) -> dict[str, bytes]:
    n = np.asarray(normals, dtype=np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    a = np.clip(np.round((n + 1) / 2 * 255), 0, 255).astype(np.uint8)
    return {".normal.png": png_bytes(Image.fromarray(a, "RGB"))}


def write_cls(probs: np.ndarray, class_names: list[str], k: int = 5) -> dict[str, bytes]:
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")[:k]
    top = [{"label": class_names[i], "score": round(float(p[i]), 6)} for i in order]
    doc = {"label": top[0]["label"], "score": top[0]["score"], "top5": top}
    return {".cls.json": (json.dumps(doc) + "\n").encode()}


def with_sources(files: dict[str, bytes], sources: dict) -> dict[str, bytes]:
    """The outputs with ``sources`` (which networks made them: name and hash) added to
    each JSON output (the semseg legend, the cls result); the pictures stay as they are."""
    out = dict(files)
    for suffix, data in files.items():
        if suffix.endswith(".json"):
            doc = json.loads(data)
            doc.update(sources)
            out[suffix] = (json.dumps(doc, indent=1) + "\n").encode()
    return out


def read_depth_png(data_or_path) -> np.ndarray:
    """Inverse of :func:`write_depth`: metres as float64 (0 where no depth)."""
    import io

    src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    return np.asarray(Image.open(src), dtype=np.float64) / DEPTH_SCALE
