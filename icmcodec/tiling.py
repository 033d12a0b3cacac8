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

from dataclasses import dataclass
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
    # as few tiles as ``tile`` allows, of nearly equal size: no thin last tile whose
    # halo would cost more than its content
    n = -(-size // tile)
    units = size // align
    edges = [align * (units * i // n) for i in range(n + 1)]
    for k0, k1 in zip(edges, edges[1:]):
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


# ---- conv stacks: crop between layers ---------------------------------------------
# With one halo for a whole stack, every layer computes the halo the *first* layer
# needs; the costly high-resolution layers of a synthesis then do up to a third more
# work than the picture. A conv stack can do better: walking back from the output a
# tile owns, each layer needs only its own receptive field of input, so after each
# layer the tile is cropped to what the rest of the stack will read.

@dataclass(frozen=True)
class Geometry:
    """How one layer maps positions along an axis: ``conv`` (stride, kernel, padding),
    ``deconv`` (transposed: stride, kernel, padding; output = stride x input),
    ``point`` (pointwise: GDN, activations) or ``window`` (a stack of ``padding``
    window-attention layers on windows of ``kernel``, shifted or not, as in a Swin
    block: an output reads less than ``padding`` windows to each side, and the input
    must start on the window grid so that a tile's windows are the picture's)."""

    kind: str
    stride: int = 1
    kernel: int = 1
    padding: int = 0

    def needed(self, a: int, b: int) -> tuple[int, int]:
        """Input span that outputs ``[a, b)`` read (may reach past the picture)."""
        s, k, p = self.stride, self.kernel, self.padding
        if self.kind == "conv":
            return a * s - p, (b - 1) * s - p + k
        if self.kind == "deconv":
            return -((k - 1 - p - a) // s), (b - 1 + p) // s + 1  # ceil((a+p-k+1)/s), floor + 1
        if self.kind == "window":
            return (a // k - p) * k, (-(-b // k) + p) * k
        return a, b

    def out_span(self, c0: int, c1: int) -> tuple[int, int]:
        """Output span of the array a layer produces from input span ``[c0, c1)``."""
        s, k, p = self.stride, self.kernel, self.padding
        if self.kind == "conv":
            if c0 % s:
                raise ValueError("a strided conv's input must start on its grid")
            return c0 // s, c0 // s + (c1 - c0 + 2 * p - k) // s + 1
        if self.kind == "deconv":
            return c0 * s, c1 * s
        return c0, c1


def geometry_of(module) -> Geometry:
    """A layer's :class:`Geometry`: its own ``tiling_geometry()`` if it has one (Swin
    blocks), else from its type."""
    import torch.nn as nn

    if hasattr(module, "tiling_geometry"):
        return module.tiling_geometry()

    if isinstance(module, nn.ConvTranspose2d):
        if module.output_padding[0] != module.stride[0] - 1:
            raise ValueError("only transposed convs whose output is stride x input are supported")
        return Geometry("deconv", module.stride[0], module.kernel_size[0], module.padding[0])
    if isinstance(module, nn.Conv2d):
        return Geometry("conv", module.stride[0], module.kernel_size[0], module.padding[0])
    return Geometry("point")


def grid_start(geo: Geometry, a: int) -> int:
    """``a`` moved down onto the grid a layer's input must start on: a strided conv's
    stride, a windowed layer's windows (so a tile's windows are the picture's)."""
    if geo.kind == "conv" and geo.stride > 1:
        return a - a % geo.stride
    if geo.kind == "window":
        return a - a % geo.kernel
    return a


def stack_needs(geos: list[Geometry], sizes: list[tuple[int, int]], want_y: tuple[int, int],
                want_x: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Walking back from the output spans ``want_y``/``want_x``: the input spans every
    layer must receive (on its grid, clipped to the picture: reads past the picture
    are the zero padding the whole-picture run applies there too). ``[0]`` is what the
    stack reads of its input, ``[-1]`` the wanted output."""
    need = [None] * (len(geos) + 1)
    need[-1] = (want_y, want_x)
    for i in range(len(geos) - 1, -1, -1):
        (ya, yb), (xa, xb) = need[i + 1]
        (ya, yb), (xa, xb) = geos[i].needed(ya, yb), geos[i].needed(xa, xb)
        ya, xa = grid_start(geos[i], ya), grid_start(geos[i], xa)
        h, w = sizes[i]
        need[i] = ((max(ya, 0), min(yb, h)), (max(xa, 0), min(xb, w)))
    return need


def run_stack(layers, x, span_y: tuple[int, int], span_x: tuple[int, int], want_y: tuple[int, int],
              want_x: tuple[int, int], sizes: list[tuple[int, int]]):
    """Run ``layers`` (modules with their :class:`Geometry`) on ``x`` (N x C x h x w,
    covering the input spans ``span_y``/``span_x`` of the picture) and return the
    output for the spans ``want_y``/``want_x``, cropping after every layer to what the
    remaining layers read (:func:`stack_needs`). ``sizes[i]`` is the whole picture's
    (H, W) at the input of layer ``i`` and ``sizes[-1]`` at the output."""
    geos = [geometry_of(m) for m in layers]
    need = stack_needs(geos, sizes, want_y, want_x)
    cy, cx = span_y, span_x
    for i, (layer, geo) in enumerate(zip(layers, geos)):
        (ya, yb), (xa, xb) = need[i]
        if ya < cy[0] or yb > cy[1] or xa < cx[0] or xb > cx[1]:
            raise ValueError("the tile's input does not cover the stack's receptive field")
        x = x[..., ya - cy[0]:yb - cy[0], xa - cx[0]:xb - cx[0]]
        # a layer that needs to know where its input lies (prompts cut to the span) says so
        x = layer(x, (ya, yb), (xa, xb)) if getattr(layer, "wants_span", False) else layer(x)
        cy, cx = geo.out_span(ya, yb), geo.out_span(xa, xb)
    (ya, yb), (xa, xb) = want_y, want_x
    return x[..., ya - cy[0]:yb - cy[0], xa - cx[0]:xb - cx[0]]


def stack_sizes(layers, height: int, width: int) -> list[tuple[int, int]]:
    """The whole picture's size at the input of every layer and at the output."""
    sizes = [(height, width)]
    for m in layers:
        g = geometry_of(m)
        sizes.append((g.out_span(0, sizes[-1][0])[1], g.out_span(0, sizes[-1][1])[1]))
    return sizes


def run_stack_tiled(layers, get_input: Callable, height: int, width: int, *, scale, tile: int, margin: int = 0,
                    align: int = 1, out: np.ndarray | None = None, put: Callable | None = None):
    """:func:`run_tiled` for a conv stack, cropping between layers (:func:`run_stack`).

    Each tile's input span is computed from the layers' geometry (:func:`stack_needs`),
    so no halo has to be guessed: a tile always reads the whole receptive field of
    the output it owns. ``margin`` adds input beyond that, for a hook that reads the
    input tile itself (TransTIC's prompt generator, a conv net of its own). Tiles own
    ``tile`` x ``tile`` input units (multiples of ``align``); their input spans start
    on multiples of ``align`` too.

    ``get_input(y0, y1, x0, x1)`` returns the input tile (N x C x h x w tensor);
    outputs go to ``out`` or ``put`` as in :func:`run_tiled`."""
    scale = Fraction(scale)
    sizes = stack_sizes(layers, height, width)
    geos = [geometry_of(m) for m in layers]

    def span(a: int, b: int, size: int) -> tuple[int, int]:
        a, b = a - margin, b + margin
        return max(0, a - a % align), min(size, b)

    for _, _, ky0, ky1 in tiles(height, tile, 0, align):
        for _, _, kx0, kx1 in tiles(width, tile, 0, align):
            wy, wx = (int(ky0 * scale), int(ky1 * scale)), (int(kx0 * scale), int(kx1 * scale))
            (ny, nx) = stack_needs(geos, sizes, wy, wx)[0]
            sy, sx = span(*ny, height), span(*nx, width)
            part = run_stack(layers, get_input(*sy, *sx), sy, sx, wy, wx, sizes)
            if put is not None:
                put(wy[0], wy[1], wx[0], wx[1], part)
            else:
                out[..., wy[0]:wy[1], wx[0]:wx[1]] = part
            del part
    return out
