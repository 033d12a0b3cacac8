"""The Python API: pictures and bytes in, ``.icm`` bytes and task outputs out.

    import icmcodec
    data = icmcodec.encode(rgb, task="semseg", bpp=0.1)      # bytes of a .icm file
    out = icmcodec.decode(data)                              # out.output: H x W class ids
    out.files()                                              # {".semseg.png": ..., ".semseg.json": ...}
    ids = icmcodec.analyze(rgb, task="semseg")               # the clean network, no coding

For programs and distributed engines (Ray, Dask, Spark map functions): every function is
pure (bytes and arrays in and out, nothing written), models load once per process and
stay cached, and errors are exceptions a caller can tell apart:
``icmcodec.UsageError`` (a request this installation cannot serve: unknown task, quality
out of range, a budget too small, a model not installed), ``bitstream.BitstreamError``
(damaged or unsupported file), ``icmcodec.entropy.CorruptStreamError`` (damaged payload)
and ``icmcodec.imageio.ImageInputError`` (not a picture). The ``icm`` command is a thin
layer over these functions plus batching, files and exit codes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

Image = Union[np.ndarray, bytes, str, Path, "PIL.Image.Image"]  # noqa: F821


def as_rgb(image: Image) -> np.ndarray:
    """Any accepted picture as H x W x 3 uint8 (the CLI's input policy: EXIF rotation,
    alpha over white, 16-bit and grayscale to 8-bit RGB). Arrays: H x W x 3 or H x W
    (grayscale), uint8."""
    from icmcodec.imageio import ImageInputError, load_rgb, to_rgb8

    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ImageInputError(f"an array picture must be H x W x 3 (or H x W) uint8, not {a.shape} {a.dtype}")
        return np.ascontiguousarray(a)
    if isinstance(image, (bytes, bytearray, str, Path)):
        return load_rgb(bytes(image) if isinstance(image, bytearray) else image)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow is a dependency
        PILImage = None
    if PILImage is not None and isinstance(image, PILImage.Image):
        return to_rgb8(image)
    raise TypeError(f"cannot read a picture from a {type(image).__name__}")


def encode(image: Image, *, task: str = "recon", quality: float | None = None, bpp: float | None = None,
           max_bytes: int | None = None, method: str | None = None, model: str | None = None,
           task_model: str | None = None, device: str = "auto") -> bytes:
    """A picture -> the bytes of a ``.icm`` file.

    ``quality`` (the model's default if None) or a rate: ``bpp`` (the highest quality
    whose whole file is at most that many bits per pixel) or ``max_bytes``. ``method``
    and ``model`` pick the codec (``icm models`` lists them), ``task_model`` the task
    network a machine-task file names."""
    from icmcodec import pipeline

    rgb = as_rgb(image)
    codec, tasknet = pipeline.encoder_for(task, model=model, method=method, task_model=task_model, device=device)
    return pipeline.encode_image(rgb, task=task, quality=quality, bpp=bpp, max_bytes=max_bytes, codec=codec,
                                 tasknet=tasknet, device=device)


def decode(data: bytes, *, task: str | None = None, task_model: str | None = None, device: str = "auto",
           strength: float | None = None):
    """The bytes of a ``.icm`` file -> :class:`icmcodec.pipeline.Decoded`: ``.task``,
    ``.rgb`` (the picture, when the method codes one), ``.output`` (the task output:
    class ids, probabilities, ...), ``.bpp`` and ``.files()`` (what ``icm decode``
    writes, as ``{suffix: bytes}``). ``task`` asks for another output the file serves:
    ``"recon"`` a machine-task file's picture, a machine task a recon file's (through the
    task's default network, or ``task_model``). ``strength``: MPA's task strength rho
    (0: the base's picture; default: the path set's own)."""
    from icmcodec import pipeline

    net = pipeline.load_tasknet(task, task_model, device=device) if task_model else None
    return pipeline.decode_bytes(bytes(data), task=task, device=device, tasknet=net, strength=strength)


def analyze(image: Image, *, task: str, task_model: str | None = None, device: str = "auto",
            model: str | None = None) -> np.ndarray:
    """The task's clean network (``task_model``, default the task's own) on an uncoded
    picture: the same output ``decode`` gives for a coded one (class ids, an edge map,
    class probabilities, ...). ``model`` is the name this argument had before 0.3."""
    from icmcodec import pipeline

    return pipeline.load_tasknet(task, task_model or model, device=device).predict([as_rgb(image)])[0]
