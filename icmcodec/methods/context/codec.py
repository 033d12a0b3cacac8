"""The context model at coding time: the hyperprior's transforms and hyper path, then
each channel slice in two checkerboard passes, all in one range-coded LATENT stream.

Order of the stream (``CoderId.RANGE_CATEGORICAL_V1`` segments, one per slice and
pass): slice 0 anchors, slice 0 non-anchors, slice 1 anchors, ... Inside a segment the
symbols are the slice's channels at the pass's positions in C order, grouped by table
index as in every icm stream. Every entropy parameter comes from the exact integer
twins (h_s and the context nets) and already-decoded symbols, so encoder and decoder
derive the same ones on every machine.
"""
from __future__ import annotations

import numpy as np
import torch

from icmcodec.exact import ACT_FRAC, entropy_params, gain_shift, quality_log2_gain
from icmcodec.methods.context.exact import ExactContext
from icmcodec.methods.context.model import ContextConfig
import bitstream
from bitstream import ChunkType
from icmcodec.methods.base import Encoded
from icmcodec.methods.hyperprior.codec import PAD, Analysis, HyperpriorCodec


class ContextCodec(HyperpriorCodec):
    method = "context"
    config_cls = ContextConfig

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu", tiling=None):
        super().__init__(config, state, model_hash, device, tiling)
        prefix = "exact.ctx."
        params = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        self.ctx = ExactContext(params, self.arch.slice_bounds(), self.arch.hidden, self.device)

    def _passes(self, mean_h, ls_h, lg, shape, code):
        """Walk the slices and passes; ``code(k, sel, idx, mean_g) -> symbols`` codes (or
        decodes) one segment. Returns the symbols (M, H, W)."""
        m_all, h, w = shape
        anchors = (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0)
        y_sym = np.zeros(shape, dtype=np.int64)
        y_hat = np.zeros(shape, dtype=np.int64)  # un-gained fixed point, decoded so far
        for k, (c0, c1) in enumerate(self.arch.slice_bounds()):
            lgk = lg[c0:c1]
            mh = torch.from_numpy(mean_h[c0:c1]).double()
            lh = torch.from_numpy(ls_h[c0:c1]).double()
            cc = self.ctx.channel(k, y_hat[:c0].astype(np.float64) if k else None, (h, w)).cpu()
            sc = torch.zeros_like(cc)
            for sel in (anchors, ~anchors):
                mean, ls = self.ctx.params(k, mh, lh, cc, sc)
                idx, mean_g = entropy_params(mean, ls, lgk, self.pow2)
                sym = code(k, sel, idx[:, sel], mean_g[:, sel])
                y_sym[c0:c1][:, sel] = sym
                yg_fp = sym * (1 << ACT_FRAC) + mean_g[:, sel]
                y_hat[c0:c1][:, sel] = gain_shift(yg_fp, -lgk, self.pow2)
                if sel is anchors:
                    sc = self.ctx.spatial(k, np.where(anchors, y_hat[c0:c1], 0).astype(np.float64)).cpu()
        return y_sym, y_hat

    def _finish_analysis(self, coded, y, z) -> Analysis:
        an = super()._finish_analysis(coded, y, z)
        if an.hyper is None:  # the passes need the hyper output whole
            an.hyper = self._hyper_params(an.z_sym)
        return an

    @torch.no_grad()
    def code(self, an: Analysis, quality: float) -> Encoded:
        mean_h, ls_h = an.hyper
        lg = quality_log2_gain(self.log2_gain_fp, quality)
        gain = np.exp2(lg / (1 << ACT_FRAC))
        y = an.y
        enc = self.y_coder.encoder()

        def code(k, sel, idx, mean_g):
            c0, c1 = self.arch.slice_bounds()[k]
            yg = y[c0:c1][:, sel].astype(np.float64) * gain[c0:c1, None]
            sym = np.rint(yg - mean_g / (1 << ACT_FRAC)).astype(np.int64)
            enc.add(sym, idx)
            return sym

        y_sym, _ = self._passes(mean_h, ls_h, lg, y.shape, code)
        chunks = [bitstream.Chunk(ChunkType.HYPER, an.z_bytes), bitstream.Chunk(ChunkType.LATENT, enc.finish())]
        return Encoded(an.coded_size, chunks, {"z": an.z_sym, "y": y_sym})

    def decode_latents(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float):
        """(z symbols, y symbols, y_hat un-gained fixed point, log2 gains)."""
        ph, pw = coded_size
        z_shape = (self.arch.Nz, ph // PAD, pw // PAD)
        z_sym = self.z_coder.decode(z_bytes, self._z_index(z_shape)).reshape(z_shape)
        mean_h, ls_h = self._hyper_params(z_sym)
        lg = quality_log2_gain(self.log2_gain_fp, quality)
        dec = self.y_coder.decoder(y_bytes)
        y_sym, y_hat = self._passes(mean_h, ls_h, lg, (self.arch.M, ph // 16, pw // 16),
                                    lambda k, sel, idx, mean_g: dec.take(idx).reshape(idx.shape))
        dec.finish()
        return z_sym, y_sym, y_hat, lg

    def decode_symbols(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float):
        z_sym, y_sym, y_hat, lg = self.decode_latents(z_bytes, y_bytes, coded_size, quality)
        return z_sym, y_sym, y_hat, lg

    @torch.no_grad()
    def decode(self, z_bytes: bytes, y_bytes: bytes, coded_size, size, quality: float) -> np.ndarray:
        _, _, y_hat, _ = self.decode_latents(z_bytes, y_bytes, coded_size, quality)
        # y_hat is already un-gained: synthesis with zero symbols, the values as "means", no gain
        zero = np.zeros(y_hat.shape, dtype=np.int8)
        return self._synthesis(zero, y_hat, np.zeros(self.arch.M, dtype=np.int64), size)

