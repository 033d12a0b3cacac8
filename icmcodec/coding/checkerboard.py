"""Checkerboard two-pass coding of one group of latent channels (He et al., CVPR 2021).

*Anchors* ((row + column) even) are coded first, with parameters that see no spatial
context; the rest are coded second, with parameters that also see the decoded anchors.
Both passes go into the caller's segmented range coder (one segment per pass), so a
stream may hold several groups (:mod:`~icmcodec.coding.slices`). Everything that
drives the coder is an integer from the caller's exact networks and what is already
decoded, so encoder and decoder derive the same parameters anywhere.

The group's networks come in as two callables, so this component knows no layout:

* ``params(sc) -> (mean, log2 scale)``: un-gained fixed point (M x H x W), from the
  spatial context ``sc`` of the decoded anchors (``None`` in the anchor pass);
* ``spatial(anchors_fp) -> sc``: the spatial context of the decoded anchors (the
  group's un-gained fixed-point latent with the non-anchors at zero, float64).

Training (float) uses :func:`anchor_mask` for the same split.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from icmcodec.coding.gaussian import GaussianConditional
from icmcodec.exact import ACT_FRAC

Params = Callable[[object], tuple]
Spatial = Callable[[np.ndarray], object]


def anchors(h: int, w: int) -> np.ndarray:
    """True where (row + column) is even: the first pass."""
    return np.add.outer(np.arange(h), np.arange(w)) % 2 == 0


def anchor_mask(h: int, w: int, device=None) -> torch.Tensor:
    """:func:`anchors` as a float tensor (training's masks)."""
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return ((yy + xx) % 2 == 0).float()


class Checkerboard:
    """Two exact passes over one group, coded with a :class:`GaussianConditional`'s tables."""

    def __init__(self, gaussian: GaussianConditional):
        self.gaussian = gaussian

    def passes(self, shape, lg: np.ndarray, params: Params, spatial: Spatial, code, mask: np.ndarray | None = None):
        """Walk both passes; ``code(sel, idx, mean_g) -> symbols`` codes (or decodes) the
        symbols at the pass's positions ``sel`` (C order). Returns (symbols, y_hat), the
        latter un-gained fixed point (int64)."""
        m, h, w = shape
        a = anchors(h, w) if mask is None else mask
        y_sym = np.zeros(shape, dtype=np.int64)
        y_hat = np.zeros(shape, dtype=np.int64)
        sc = None
        for sel in (a, ~a):
            mean, ls = params(sc)
            idx, mean_g = self.gaussian.params(mean, ls, lg)
            sym = code(sel, idx[:, sel], mean_g[:, sel])
            y_sym[:, sel] = sym
            y_hat[:, sel] = self.gaussian.dequantize_fp(sym, mean_g[:, sel], lg)
            if sel is a:
                sc = spatial(np.where(a, y_hat, 0).astype(np.float64))
        return y_sym, y_hat

    def encode(self, enc, y: np.ndarray, lg: np.ndarray, params: Params, spatial: Spatial, mask=None):
        """Float y of the group (C x H x W) into ``enc`` (a ``TableCoder.encoder()``), two
        segments. Returns (symbols, y_hat)."""
        gain = np.exp2(lg / (1 << ACT_FRAC))

        def code(sel, idx, mean_g):
            yg = y[:, sel].astype(np.float64) * gain[:, None]
            sym = np.rint(yg - mean_g / (1 << ACT_FRAC)).astype(np.int64)
            enc.add(sym, idx)
            return sym

        return self.passes(y.shape, lg, params, spatial, code, mask)

    def decode(self, dec, shape, lg: np.ndarray, params: Params, spatial: Spatial, mask=None):
        """The group's two segments from ``dec`` (a ``TableCoder.decoder(...)``).
        Returns (symbols, y_hat)."""
        return self.passes(shape, lg, params, spatial, lambda sel, idx, mean_g: dec.take(idx).reshape(idx.shape),
                           mask)
