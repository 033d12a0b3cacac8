"""Factorized z: the hyper-latent's symbols <-> the HYPER chunk's bytes.

One baked integer table per channel (``tables.z.*``) and the integer medians
(``exact.z_median_fp``): a z value is coded as ``round(z - median)``. No parameter
depends on anything decoded, so z decodes first and alone.
"""
from __future__ import annotations

import numpy as np

from icmcodec.entropy import IntTables, TableCoder
from icmcodec.exact import ACT_FRAC

# z symbols beyond this saturate the exact path's activation limit anyway; clamping them
# first keeps ``z * 2**ACT_FRAC`` inside int64 for any file (the same rule on both sides)
Z_SYMBOL_LIMIT = 1 << 20


class FactorizedZ:
    """z symbols <-> bytes with one table per channel around integer medians."""

    def __init__(self, tables: IntTables, median_fp: np.ndarray):
        self.coder = TableCoder(tables)
        self.median_fp = np.asarray(median_fp, dtype=np.int64)

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str = "") -> "FactorizedZ":
        """From a model file's ``tables.z.*`` and ``exact.z_median_fp``."""
        tables = IntTables(state[prefix + "tables.z.counts"], state[prefix + "tables.z.offsets"],
                           state[prefix + "tables.z.lengths"])
        return cls(tables, state[prefix + "exact.z_median_fp"])

    @property
    def channels(self) -> int:
        return int(self.median_fp.shape[0])

    def index(self, shape) -> np.ndarray:
        """The table of every symbol: its channel."""
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    # ---- encode ------------------------------------------------------------------
    def quantize(self, z: np.ndarray) -> np.ndarray:
        """Float z (C x h x w) -> int64 symbols, ``round(z - median)``."""
        return np.rint(z - self.median_fp[:, None, None] / (1 << ACT_FRAC)).astype(np.int64)

    def encode(self, z_sym: np.ndarray) -> bytes:
        return self.coder.encode(z_sym, self.index(z_sym.shape))

    # ---- decode ------------------------------------------------------------------
    def decode(self, data: bytes, shape) -> np.ndarray:
        """HYPER bytes -> int64 symbols of ``shape`` (C x h x w)."""
        return self.coder.decode(data, self.index(shape)).reshape(shape)

    def fixed_point(self, z_sym: np.ndarray) -> np.ndarray:
        """Symbols -> z_hat in fixed point (ACT_FRAC bits), clamped: what the exact h_s reads."""
        z = np.clip(z_sym, -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        return z * (1 << ACT_FRAC) + self.median_fp[:, None, None]

    def dequantize(self, z_sym: np.ndarray) -> np.ndarray:
        """Symbols -> float32 z_hat (``symbol + median``), for a float network that reads z."""
        return (z_sym + self.median_fp[:, None, None] / (1 << ACT_FRAC)).astype(np.float32)

    # ---- rate --------------------------------------------------------------------
    def bits(self, z_sym: np.ndarray) -> np.ndarray:
        """Exact bits of every symbol (the same tables the coder uses)."""
        return self.coder.bits(z_sym, self.index(z_sym.shape))
