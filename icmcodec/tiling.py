"""Running a convolutional transform over a large picture in tiles, in bounded memory.

A transform whose output at a position depends only on inputs within a finite
receptive field gives, on a tile cut out with enough surrounding input (the *halo*),
the same values as on the whole picture, away from the tile's cut edges. So
:func:`run_tiled` cuts the input into tiles of ``tile`` x ``tile`` input units, gives
each one ``halo`` units of its neighbours (fewer at the picture's own border, where the
whole-picture transform pads too), runs the transform, and keeps each tile's own part
of the output. Peak memory then grows with the tile, not with the picture.

* Float transforms (analysis, synthesis): the result equals the untiled one up to float
  rounding (convolution kernels may sum in another order on another shape).
* Integer transforms (the exact hyper synthesis): the result is identical, because
  every value is an exact integer.

``scale`` is output units per input unit (``Fraction(1, 16)`` for an analysis that
down-samples by 16, ``16`` for the synthesis). Tile corners and halos are multiples of
``align`` input units, so that strided layers sample the same grid in every tile.
Pictures that fit one tile run untiled: nothing changes for them. Every method runs
its transforms through this one executor.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterator

import numpy as np


def tiles(size: int, tile: int, halo: int, align: int) -> Iterator[tuple[int, int, int, int]]:
    """Along one axis of ``size`` input units: ``(src0, src1, keep0, keep1)`` per tile,
    ``src`` the input span with halo and ``keep`` the span of output it owns."""
    if tile % align or halo % align or size % align:
        raise ValueError("tile, halo and size must be multiples of align")
    if size <= tile:
        yield 0, size, 0, size
        return
    for k0 in range(0, size, tile):
        k1 = min(size, k0 + tile)
        yield max(0, k0 - halo), min(size, k1 + halo), k0, k1


def run_tiled(fn: Callable, height: int, width: int, *, scale, tile: int, halo: int, align: int = 1,
              out: np.ndarray | None = None, put: Callable | None = None):
    """Apply ``fn(y0, y1, x0, x1) -> array (..., h, w)`` over tiles of the input grid.

    ``fn`` gets an input span (with halo) and returns the output for that span (its
    last two axes are ``scale`` times the span). Each tile's own part is handed to
    ``put(oy0, oy1, ox0, ox1, part)``, or written into ``out[..., oy0:oy1, ox0:ox1]``.
    """
    scale = Fraction(scale)

    def o(v: int) -> int:
        r = v * scale
        if r.denominator != 1:
            raise ValueError("tile edges must fall on whole output units")
        return int(r)

    for sy0, sy1, ky0, ky1 in tiles(height, tile, halo, align):
        for sx0, sx1, kx0, kx1 in tiles(width, tile, halo, align):
            res = fn(sy0, sy1, sx0, sx1)
            part = res[..., o(ky0 - sy0):o(ky1 - sy0), o(kx0 - sx0):o(kx1 - sx0)]
            if put is not None:
                put(o(ky0), o(ky1), o(kx0), o(kx1), part)
            else:
                out[..., o(ky0):o(ky1), o(kx0):o(kx1)] = part
            del res, part
    return out
