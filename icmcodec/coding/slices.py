"""Channel slices, each a checkerboard, with the channel context: the context model's y.

The latent's channels are split into slices of uneven size (ELIC's groups, small
first); slice ``k`` is a :class:`~icmcodec.coding.checkerboard.Checkerboard` whose
parameters see the decoded slices before it through ``cc[k]`` (3x3 conv, ReLU) and,
in its second pass, its own decoded anchors through ``sc[k]`` (5x5 conv); ``ep[k]``
(1x1 conv, ReLU, 1x1 conv) turns [hyper mean, hyper log2 scale, channel context,
spatial context] into corrections added to the hyper's (mean, log2 scale).

Order of the stream (``CoderId.RANGE_CATEGORICAL_V1`` segments, one per slice and
pass): slice 0 anchors, slice 0 non-anchors, slice 1 anchors, ... Inside a segment the
symbols are the slice's channels at the pass's positions in C order, grouped by table
index as in every icm stream.

The integer twin of the context nets: per slice three :class:`~icmcodec.exact.Plan`s,
quantized once at export and stored as ``exact.ctx.<k>.<net>.<i>.{weight,bias}``.
:class:`ExactContext` runs them on fixed-point integers: the decoded latents enter
un-gained (``gain_shift`` by the negated log2 gains, an exact integer rule), so every
entropy parameter of every slice and pass is the same integer on every machine.
"""
from __future__ import annotations

import numpy as np
import torch

from icmcodec.coding.checkerboard import Checkerboard, anchors
from icmcodec.coding.gaussian import GaussianConditional
from icmcodec.exact import ACT_LIMIT, Plan, quantize_conv

CC = Plan((("conv", 0), ("relu",)))
SC = Plan((("conv", 0),))
EP = Plan((("conv", 0), ("relu",), ("conv", 1)))


def quantize_context(ctx) -> dict[str, np.ndarray]:
    """Trained float ``ContextNets`` -> integer parameters (bounds checked)."""
    out = {}
    for k in range(len(ctx.ep)):
        convs = {"sc": [ctx.sc[k]], "ep": [ctx.ep[k][0], ctx.ep[k][2]]}
        if k:
            convs["cc"] = [ctx.cc[k]]
        for net, mods in convs.items():
            for i, m in enumerate(mods):
                for leaf, v in quantize_conv(m, f"context slice {k} {net} conv {i}").items():
                    out[f"{k}.{net}.{i}.{leaf}"] = v
    return out


def dequantize_into(ctx, params: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`quantize_context` (a warm start from a shipped model)."""
    from icmcodec.exact import ACT_FRAC, W_FRAC

    for key, v in params.items():
        k, net, i, leaf = key.split(".")
        k, i = int(k), int(i)
        mod = {"cc": lambda: ctx.cc[k], "sc": lambda: ctx.sc[k], "ep": lambda: ctx.ep[k][2 * i]}[net]()
        frac = W_FRAC if leaf == "weight" else W_FRAC + ACT_FRAC
        with torch.no_grad():
            getattr(mod, leaf).copy_(torch.from_numpy(np.asarray(v, np.float64) / (1 << frac)).float())


class ExactContext:
    """Integer context and parameter networks of every slice."""

    def __init__(self, params: dict[str, np.ndarray], slices: list[tuple[int, int]], hidden: int, device="cpu"):
        self.device = torch.device(device)
        self.hidden = hidden
        self.nets = []
        for k in range(len(slices)):
            def sub(net):
                prefix = f"{k}.{net}."
                return {key[len(prefix):]: v for key, v in params.items() if key.startswith(prefix)}
            self.nets.append({
                "cc": CC.load(sub("cc"), self.device) if k else None,
                "sc": SC.load(sub("sc"), self.device),
                "ep": EP.load(sub("ep"), self.device),
            })

    def channel(self, k: int, y_prev_fp: np.ndarray | None, shape) -> torch.Tensor:
        if k == 0:
            return torch.zeros((self.hidden,) + tuple(shape), dtype=torch.float64, device=self.device)
        return CC.run(self.nets[k]["cc"], torch.from_numpy(y_prev_fp).to(self.device))

    def spatial(self, k: int, anchors_fp: np.ndarray) -> torch.Tensor:
        return SC.run(self.nets[k]["sc"], torch.from_numpy(anchors_fp).to(self.device))

    def params(self, k: int, mean_h: torch.Tensor, ls_h: torch.Tensor, cc: torch.Tensor, sc: torch.Tensor):
        """(mean, log2 scale), un-gained fixed point: the hyper's plus the corrections."""
        d = EP.run(self.nets[k]["ep"], torch.cat([mean_h, ls_h, cc, sc], 0))
        dm, dl = d.chunk(2, 0)
        return (mean_h + dm).clamp_(-ACT_LIMIT, ACT_LIMIT), (ls_h + dl).clamp_(-ACT_LIMIT, ACT_LIMIT)


def slice_bounds(slices) -> list[tuple[int, int]]:
    """(first, end) channel of every slice of sizes ``slices``."""
    edges = [0]
    for s in slices:
        edges.append(edges[-1] + s)
    return list(zip(edges, edges[1:]))


class ChannelSlices:
    """The y codec of uneven channel slices, each coded as a checkerboard (see the
    module docstring). It needs the hyper output whole (every slice reads it)."""

    needs_whole_hyper = True

    def __init__(self, gaussian: GaussianConditional, ctx: ExactContext, bounds: list[tuple[int, int]]):
        self.gaussian, self.ctx, self.bounds = gaussian, ctx, list(bounds)
        self.checkerboard = Checkerboard(gaussian)

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], bounds, hidden: int, device="cpu",
                   gaussian: GaussianConditional | None = None, prefix: str = "exact.ctx.") -> "ChannelSlices":
        """From a model file's ``exact.ctx.*`` (and its y tables and gains)."""
        params = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return cls(gaussian or GaussianConditional.from_state(state), ExactContext(params, bounds, hidden, device),
                   bounds)

    def passes(self, mean_h, ls_h, lg, shape, group):
        """Walk the slices; ``group(k, checkerboard, lgk, params, spatial, mask) ->
        (symbols, y_hat)`` encodes or decodes slice ``k``. Returns (symbols, y_hat) of
        the whole latent (y_hat un-gained fixed point)."""
        m_all, h, w = shape
        mask = anchors(h, w)
        y_sym = np.zeros(shape, dtype=np.int64)
        y_hat = np.zeros(shape, dtype=np.int64)  # un-gained fixed point, decoded so far
        for k, (c0, c1) in enumerate(self.bounds):
            mh = torch.from_numpy(mean_h[c0:c1]).double()
            lh = torch.from_numpy(ls_h[c0:c1]).double()
            cc = self.ctx.channel(k, y_hat[:c0].astype(np.float64) if k else None, (h, w)).cpu()
            zero = torch.zeros_like(cc)

            def params(sc, k=k, mh=mh, lh=lh, cc=cc, zero=zero):
                return self.ctx.params(k, mh, lh, cc, zero if sc is None else sc)

            def spatial(anchors_fp, k=k):
                return self.ctx.spatial(k, anchors_fp).cpu()

            y_sym[c0:c1], y_hat[c0:c1] = group(k, self.checkerboard, lg[c0:c1], params, spatial, mask)
        return y_sym, y_hat

    # ---- the y codec interface (see :class:`~icmcodec.coding.hyperprior.Hyperprior`) -----
    @torch.no_grad()
    def encode(self, y: np.ndarray, hyper, quality: float) -> tuple[bytes, np.ndarray]:
        mean_h, ls_h = hyper.whole()
        lg = self.gaussian.gains(quality)
        enc = self.gaussian.coder.encoder()

        def group(k, cb, lgk, params, spatial, mask):
            c0, c1 = self.bounds[k]
            return cb.encode(enc, y[c0:c1], lgk, params, spatial, mask)

        y_sym, _ = self.passes(mean_h, ls_h, lg, y.shape, group)
        return enc.finish(), y_sym

    @torch.no_grad()
    def decode(self, data: bytes, hyper, quality: float):
        """LATENT bytes -> (symbols, y_hat un-gained fixed point, log2 gains)."""
        mean_h, ls_h = hyper.whole()
        lg = self.gaussian.gains(quality)
        dec = self.gaussian.coder.decoder(data)

        def group(k, cb, lgk, params, spatial, mask):
            c0, c1 = self.bounds[k]
            return cb.decode(dec, (c1 - c0,) + hyper.shape[1:], lgk, params, spatial, mask)

        y_sym, y_hat = self.passes(mean_h, ls_h, lg, hyper.shape, group)
        dec.finish()
        return y_sym, y_hat, lg

    @staticmethod
    def reconstruction(decoded):
        """(symbols, gained mean, log2 gains) for a float synthesis: y_hat is already
        un-gained, so zero symbols, y_hat as the "means" and no gain."""
        _, y_hat, _ = decoded
        return np.zeros(y_hat.shape, dtype=np.int8), y_hat, np.zeros(y_hat.shape[0], dtype=np.int64)


class _PassRouter:
    """One stream per checkerboard pass: a :class:`~icmcodec.coding.checkerboard.Checkerboard`
    codes (or decodes) anchors, then the rest, group after group; this sends its calls
    to two streams in turn, so all anchors land in one and all the rest in the other."""

    def __init__(self, anchors, rest):
        self.streams, self.n = (anchors, rest), 0

    def add(self, symbols, idx) -> None:
        self.streams[self.n % 2].add(symbols, idx)
        self.n += 1

    def take(self, idx):
        out = self.streams[self.n % 2].take(idx)
        self.n += 1
        return out


class PassChunkSlices(ChannelSlices):
    """:class:`ChannelSlices` whose two checkerboard passes are two streams (each its own
    LATENT chunk): ``encode`` returns ``((anchor bytes, rest bytes), symbols)`` and
    ``decode`` takes that pair. The symbols, their order within each pass and every
    parameter are those of :class:`ChannelSlices`; only the split into streams differs."""

    @torch.no_grad()
    def encode(self, y: np.ndarray, hyper, quality: float):
        mean_h, ls_h = hyper.whole()
        lg = self.gaussian.gains(quality)
        a, b = self.gaussian.coder.encoder(), self.gaussian.coder.encoder()
        route = _PassRouter(a, b)

        def group(k, cb, lgk, params, spatial, mask):
            c0, c1 = self.bounds[k]
            return cb.encode(route, y[c0:c1], lgk, params, spatial, mask)

        y_sym, _ = self.passes(mean_h, ls_h, lg, y.shape, group)
        return (a.finish(), b.finish()), y_sym

    @torch.no_grad()
    def decode(self, data: tuple[bytes, bytes], hyper, quality: float):
        mean_h, ls_h = hyper.whole()
        lg = self.gaussian.gains(quality)
        a, b = self.gaussian.coder.decoder(data[0]), self.gaussian.coder.decoder(data[1])
        route = _PassRouter(a, b)

        def group(k, cb, lgk, params, spatial, mask):
            c0, c1 = self.bounds[k]
            return cb.decode(route, (c1 - c0,) + hyper.shape[1:], lgk, params, spatial, mask)

        y_sym, y_hat = self.passes(mean_h, ls_h, lg, hyper.shape, group)
        a.finish()
        b.finish()
        return y_sym, y_hat, lg
