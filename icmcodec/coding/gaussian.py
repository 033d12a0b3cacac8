"""Gaussian-conditional y: latent symbols <-> LATENT bytes under exact integer parameters.

Every symbol is coded with a baked table (``tables.y.*``, one per scale index) chosen
by its exact parameters: an un-gained fixed-point mean and log2 scale from an exact
integer network, plus the quality's integer log2 gains (``exact.log2_gain_fp``,
interpolated by :func:`~icmcodec.exact.quality_log2_gain`). :func:`~icmcodec.exact.entropy_params`
turns them into (scale index, gained mean); a latent ``y`` is coded as
``round(y * gain - gained mean)``. The same integers on both sides, so the same tables.

:class:`GaussianConditional` is the y codec of the plain hyperprior (every latent's
parameters from h_s alone, see :class:`~icmcodec.coding.hyperprior.Hyperprior`) and the
quantizer and coder under the context codecs (:mod:`~icmcodec.coding.checkerboard`,
:mod:`~icmcodec.coding.slices`).
"""
from __future__ import annotations

import numpy as np

from icmcodec.entropy import IntTables, TableCoder
from icmcodec.exact import ACT_FRAC, ACT_LIMIT, entropy_params, gain_shift, quality_log2_gain


class GaussianConditional:
    """The y tables, the quality gains and the exact rules between them."""

    needs_whole_hyper = False  # its parameters come from h_s alone: computed tile by tile

    def __init__(self, tables: IntTables, log2_gain_fp: np.ndarray, pow2: np.ndarray):
        self.coder = TableCoder(tables)
        self.log2_gain_fp = np.asarray(log2_gain_fp, dtype=np.int64)
        self.pow2 = np.asarray(pow2, dtype=np.int64)

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str = "") -> "GaussianConditional":
        """From a model file's ``tables.y.*``, ``exact.log2_gain_fp`` and ``exact.pow2``."""
        tables = IntTables(state[prefix + "tables.y.counts"], state[prefix + "tables.y.offsets"],
                           state[prefix + "tables.y.lengths"])
        return cls(tables, state[prefix + "exact.log2_gain_fp"], state[prefix + "exact.pow2"])

    @property
    def gaussian(self) -> "GaussianConditional":
        """The quantizer and coder under a y codec (itself here)."""
        return self

    # ---- the exact rules --------------------------------------------------------------
    def gains(self, quality: float) -> np.ndarray:
        """Integer log2 gains (ACT_FRAC bits) of every channel at a quality."""
        return quality_log2_gain(self.log2_gain_fp, quality)

    def params(self, mean_fp, ls_fp, lg: np.ndarray):
        """(scale index, gained mean fixed point) from un-gained (mean, log2 scale)."""
        return entropy_params(mean_fp, ls_fp, lg, self.pow2)

    def symbols(self, y: np.ndarray, mean_g_fp: np.ndarray, lg: np.ndarray) -> np.ndarray:
        """Float y (C x ...) -> int64 symbols ``round(y * gain - mean_g)``, a channel at a
        time (no float64 copy of the whole latent)."""
        gain = np.exp2(lg / (1 << ACT_FRAC))
        y_sym = np.empty(y.shape, dtype=np.int64)
        for c in range(y.shape[0]):
            y_sym[c] = np.rint(y[c].astype(np.float64) * gain[c] - mean_g_fp[c] / (1 << ACT_FRAC))
        return y_sym

    def dequantize_fp(self, y_sym: np.ndarray, mean_g_fp: np.ndarray, lg: np.ndarray) -> np.ndarray:
        """Symbols -> the decoded latent, un-gained fixed point (exact integers: what a
        context network reads)."""
        return gain_shift(y_sym * (1 << ACT_FRAC) + mean_g_fp, -lg, self.pow2)

    # ---- the whole latent from the hyper output (the plain hyperprior's y) ---------------
    def latent_params(self, hyper, quality: float):
        """(scale index uint8, gained mean fixed point, log2 gains) of every latent from a
        :class:`~icmcodec.coding.hyperprior.HyperOutput`: from its whole (mean, log2 scale)
        when it holds them, else tile by tile as the exact h_s runs (never whole)."""
        lg = self.gains(quality)
        if hyper.cached is not None:
            idx, mean_g = self.params(hyper.cached[0], hyper.cached[1], lg)
            return idx.astype(np.uint8), mean_g, lg
        # gained means fit int32 unless a gain reaches 2**8 (|mean| <= ACT_LIMIT = 2**22)
        wide = (ACT_LIMIT << max(int(lg.max()) >> ACT_FRAC, 0) + 1) >= (1 << 31)
        idx = np.empty(hyper.shape, dtype=np.uint8)
        mean_g = np.empty(idx.shape, dtype=np.int64 if wide else np.int32)

        def put(oy0, oy1, ox0, ox1, part):
            i, m = self.params(part[0], part[1], lg)
            idx[:, oy0:oy1, ox0:ox1] = i
            mean_g[:, oy0:oy1, ox0:ox1] = m

        hyper.each_tile(put)
        return idx, mean_g, lg

    def encode(self, y: np.ndarray, hyper, quality: float) -> tuple[bytes, np.ndarray]:
        """Float y (M x h x w) -> (LATENT bytes, symbols)."""
        idx, mean_g_fp, lg = self.latent_params(hyper, quality)
        y_sym = self.symbols(y, mean_g_fp, lg)
        return self.coder.encode(y_sym, idx), y_sym

    def decode(self, data: bytes, hyper, quality: float):
        """LATENT bytes -> (symbols, gained mean fixed point, log2 gains)."""
        idx, mean_g_fp, lg = self.latent_params(hyper, quality)
        y_sym = self.coder.decode(data, idx).reshape(idx.shape)
        return y_sym, mean_g_fp, lg

    @staticmethod
    def reconstruction(decoded):
        """What a float synthesis reads from :meth:`decode`'s output: (symbols, gained
        mean fixed point, log2 gains); ``y_hat = (sym + mean_g) / gain``."""
        return decoded

    def bits(self, y_sym: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Exact bits of every symbol under its table (the rate the stream spends)."""
        return self.coder.bits(y_sym, idx)
