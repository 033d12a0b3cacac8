"""A dense task network over a large picture in overlapping tiles, stitched.

A task network's receptive field reaches far (EfficientNet's stride-32 stages see most
of a tile), so unlike the codecs' transforms (:mod:`icmcodec.tiling`) a tile cannot
carry its whole receptive field. Instead each tile is run with a wide ``halo`` of
context and only its own part is kept: away from the picture's edges the network sees
``halo`` pixels of real context in every direction, which is what its features
depend on in practice. The result is close to the whole-picture run, not equal to it
(``benchmarks/hostile.py`` measures the agreement on a 3840x2160 picture, and
``tests/test_tiled_tasks.py`` bounds it on a small one).

Each tile's logits are post-processed right away (class ids, probabilities, NMS'd
edges), so memory holds one tile's logits and the picture's output, never the
picture's logits (11 x 8192 x 8192 float32 would be 2.9 GB). Post-processing runs on
the tile's logits with ``margin`` pixels of its neighbours (clipped at the picture's
own edges), so a local post-processing step (the boundary task's non-maximum
suppression reads 8 pixels around) gives exactly the whole picture's values.

Tiles are aligned to ``align`` pixels (the network's largest stride), so strided
layers sample the same grid in every tile; the picture is edge-padded to a multiple of
``align`` for the run and the output cropped back.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from icmcodec.tiling import tiles

TILE = 512  # pixels a tile owns (peak memory against the halo's overhead, measured at 3840x2160)
HALO = 192  # pixels of context around each tile
ALIGN = 32  # the network's largest stride
MARGIN = 16  # pixels of neighbouring logits a tile's post-processing reads


WHOLE = 1024  # pictures up to this a side run whole (every validation picture): unchanged by tiling


def needs_tiles(height: int, width: int, whole: int = WHOLE) -> bool:
    return max(height, width) > whole


def predict_tiled(logits: Callable, size: tuple[int, int], grid: tuple[int, int], postprocess: Callable, *,
                  tile: int = TILE, halo: int = HALO, align: int = ALIGN, margin: int = MARGIN) -> np.ndarray:
    """The output (H x W [x ...]) of a dense network run in tiles.

    ``logits(y0, y1, x0, x1)`` returns the C x (y1 - y0) x (x1 - x0) logits of an input
    span (numpy or torch, at picture resolution); ``grid`` is the (padded) size tiles
    are cut from, ``size`` the picture's own size (<= grid), which the output has;
    ``postprocess`` maps C x h x w logits to the h x w [x ...] output."""
    h, w = size
    if halo < margin:
        raise ValueError("the halo must cover the post-processing margin")
    out = None
    for sy0, sy1, ky0, ky1 in tiles(grid[0], tile, halo, align):
        if ky0 >= h:
            continue
        for sx0, sx1, kx0, kx1 in tiles(grid[1], tile, halo, align):
            if kx0 >= w:
                continue
            lg = logits(sy0, sy1, sx0, sx1)
            # the post-processed block: this tile's part and ``margin`` around, inside the picture
            py0, py1 = max(sy0, ky0 - margin), min(sy1, ky1 + margin, h)
            px0, px1 = max(sx0, kx0 - margin), min(sx1, kx1 + margin, w)
            block = lg[:, py0 - sy0:py1 - sy0, px0 - sx0:px1 - sx0]
            block = postprocess(block.detach().float().cpu().numpy() if hasattr(block, "cpu") else np.asarray(block))
            ky1c, kx1c = min(ky1, h), min(kx1, w)
            part = block[ky0 - py0:ky1c - py0, kx0 - px0:kx1c - px0]
            if out is None:
                out = np.empty((h, w) + part.shape[2:], part.dtype)
            out[ky0:ky1c, kx0:kx1c] = part
            del lg, block, part
    return out


def padded_tile(rgb: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``rgb[y0:y1, x0:x1]`` of the picture edge-padded to any size (rows and columns
    past its end repeat the last one), without padding the whole picture."""
    h, w = rgb.shape[:2]
    ys, xs = np.minimum(np.arange(y0, y1), h - 1), np.minimum(np.arange(x0, x1), w - 1)
    if y1 <= h and x1 <= w:
        return rgb[y0:y1, x0:x1]
    return rgb[ys[:, None], xs[None, :]]
