"""The one API the CLI and the benchmarks use: picture -> ``.icm`` bytes -> output.

``encode_image`` pads, analyses, codes and packs a container; ``decode_bytes`` checks
the container, finds the model named by its hash, decodes and returns the task
output. Models are loaded once per (model, device) and cached.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import bitstream
from bitstream import ChunkType, CoderId, TaskTag
from icmcodec import zoo
from icmcodec.registry import METHODS, TASK_NAMES, method_by_id



class UsageError(ValueError):
    """A request the codec cannot serve (unknown task, quality out of range, ...)."""


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r} (auto, cpu or cuda)")
    return device


@lru_cache(maxsize=8)
def _load(path: str, device: str):
    config, state, mhash = zoo.load_state(zoo.entry_at(path))
    spec = METHODS[config["method"]]
    return spec.build(config, state, mhash, device)


def load_codec(model: str | None = None, *, task: str = "recon", model_hash: bytes | None = None,
               device: str = "auto"):
    entry = zoo.find(model, task=task, model_hash=model_hash)
    return _load(str(entry.path.resolve()), resolve_device(device))


@dataclass
class Decoded:
    header: bitstream.Header
    task: str
    rgb: np.ndarray | None  # recon output, H x W x 3 uint8
    bpp: float


def check_quality(codec, quality: float | None) -> float:
    """The canonical quality to code with: the model's default when None."""
    lo, hi = codec.quality_range
    q = codec.default_quality if quality is None else float(quality)
    if not lo <= q <= hi:
        raise UsageError(f"quality {q:g} outside this model's range {lo:g}..{hi:g}")
    return bitstream.canonical_quality(q)


def encode_image(rgb: np.ndarray, *, task: str = "recon", quality: float | None = None,
                 model: str | None = None, device: str = "auto", codec=None) -> bytes:
    """H x W x 3 uint8 RGB -> complete ``.icm`` file bytes."""
    if task not in TASK_NAMES:
        raise UsageError(f"unknown task {task!r} (one of: {', '.join(TASK_NAMES)})")
    if codec is None:
        try:
            codec = load_codec(model, task=task, device=device)
        except zoo.ModelNotFoundError as e:
            raise UsageError(str(e)) from None
    q = check_quality(codec, quality)
    h, w = rgb.shape[:2]
    if h * w > bitstream.MAX_PIXELS or max(h, w) > bitstream.MAX_SIDE:
        raise UsageError(f"image is {w}x{h}, over the limit of {bitstream.MAX_PIXELS} pixels")
    out = codec.encode(rgb, q)
    spec = METHODS[codec.config["method"]]
    header = bitstream.Header(
        method=spec.method_id, task=TASK_NAMES[task], coder=CoderId.RANGE_CATEGORICAL_V1,
        quality=q, height=h, width=w, coded_height=out["coded_size"][0],
        coded_width=out["coded_size"][1], model_hash=codec.model_hash,
    )
    chunks = [bitstream.Chunk(ChunkType.HYPER, out["z"]), bitstream.Chunk(ChunkType.LATENT, out["y"])]
    return bitstream.pack(header, chunks)


def codec_for(header: bitstream.Header, device: str = "auto"):
    """The installed codec a file's header names (by method and model hash); cached."""
    try:
        method_by_id(header.method)
        return load_codec(model_hash=header.model_hash, device=device)
    except (zoo.ModelNotFoundError, LookupError) as e:
        raise UsageError(str(e)) from None


def decode_bytes(data: bytes, *, device: str = "auto", codec=None) -> Decoded:
    """Complete ``.icm`` bytes -> the task output. Raises ``bitstream.BitstreamError``
    for a damaged file and ``UsageError`` for one this installation cannot decode."""
    c = bitstream.unpack(data)
    hd = c.header
    if hd.task != TaskTag.RECON:
        raise UsageError(f"task {hd.task.name.lower()} is not supported by this version of icm")
    if codec is None:
        codec = codec_for(hd, device)
    elif codec.model_hash != hd.model_hash:
        raise UsageError("the file was made with another model than the one given")
    z, y = c.get(ChunkType.HYPER), c.get(ChunkType.LATENT)
    if len(z) != 1 or len(y) != 1:
        raise bitstream.LengthError("expected one hyper and one latent chunk")
    rgb = codec.decode(z[0], y[0], (hd.coded_height, hd.coded_width), (hd.height, hd.width), hd.quality)
    return Decoded(hd, hd.task.name.lower(), rgb, bitstream.bits_per_pixel(c))
