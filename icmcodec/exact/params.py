"""From a network's integer output to what the range coder needs: scale indices and
gained means, and the integer quality-to-gain rule (see :mod:`icmcodec.exact`)."""
from __future__ import annotations

import numpy as np
import torch

from icmcodec.exact.layers import ACT_FRAC

QUALITY_FRAC = 8  # quality grid: 1/256

# Scale table: scale[k] = 2 ** ((SCALE_LS0 + k * SCALE_STEP) / 2**ACT_FRAC), k < SCALE_COUNT.
# Integer literals on purpose: the index rule must not depend on a float log.
SCALE_LS0 = -3261  # log2(0.11) * 1024
SCALE_STEP = 182  # (log2(256) - log2(0.11)) / 63 * 1024
SCALE_COUNT = 64
POW2_BITS = 16  # the pow2 table holds round(2**(f/1024) * 2**16)
EXTRAPOLATE_LEVELS = 4  # how far below level 0 a model's quality_range may reach


def scale_table() -> np.ndarray:
    return 2.0 ** ((SCALE_LS0 + SCALE_STEP * np.arange(SCALE_COUNT)) / 2**ACT_FRAC)


def pow2_table() -> np.ndarray:
    """round(2**(f/1024) * 2**16) for f in 0..1023; baked into each model file."""
    f = np.arange(1 << ACT_FRAC, dtype=np.float64)
    return np.round(2.0 ** (f / (1 << ACT_FRAC)) * (1 << POW2_BITS)).astype(np.int64)


def quality_log2_gain(lg_table: np.ndarray, quality: float) -> np.ndarray:
    """Integer log2 gains (ACT_FRAC bits) for a quality, linear on the 1/256 grid.

    Between trained levels the gains are interpolated; below level 0 (down to
    ``-EXTRAPOLATE_LEVELS``) they continue the line through levels 0 and 1, which
    gives lower rates than any trained level (a model opts in through its
    ``quality_range``). Floor division keeps negative steps exact."""
    levels = lg_table.shape[0]
    q = int(round(quality * (1 << QUALITY_FRAC)))
    q = min(max(q, -EXTRAPOLATE_LEVELS << QUALITY_FRAC), (levels - 1) << QUALITY_FRAC)
    lo = min(max(q >> QUALITY_FRAC, 0), levels - 2)
    frac = q - (lo << QUALITY_FRAC)
    a = lg_table[lo].astype(np.int64)
    b = lg_table[lo + 1].astype(np.int64)
    return a + ((b - a) * frac) // (1 << QUALITY_FRAC)


def gain_shift(v: np.ndarray, lg: np.ndarray, pow2: np.ndarray) -> np.ndarray:
    """``floor(v * 2**(lg / 2**ACT_FRAC))`` in integers: ``v`` (C, ...) int64, ``lg`` (C,)
    integer log2 gains (negative ones divide). Exact and the same everywhere."""
    lg = np.asarray(lg, dtype=np.int64).reshape((-1,) + (1,) * (np.ndim(v) - 1))
    ipart, fpart = lg >> ACT_FRAC, lg & ((1 << ACT_FRAC) - 1)
    g = np.asarray(pow2, dtype=np.int64)[fpart]  # 2**(fpart/1024) with 16 fractional bits
    m = (np.asarray(v, dtype=np.int64) * g) >> POW2_BITS
    return np.where(ipart >= 0, m << np.maximum(ipart, 0), m >> np.maximum(-ipart, 0))


def entropy_params(mean_fp: torch.Tensor, ls_fp: torch.Tensor, lg_fp: np.ndarray, pow2: np.ndarray):
    """Exact (scale index, gained mean) for every latent.

    ``mean_fp``/``ls_fp``: (M, H, W) fixed-point outputs of an exact network;
    ``lg_fp``: (M,) integer log2 gains. Returns int64 numpy arrays ``idx`` (M, H, W)
    and ``mean_g_fp`` (fixed-point, ACT_FRAC bits) of ``mean * 2**lg``.
    """
    m = mean_fp.cpu().numpy().astype(np.int64) if isinstance(mean_fp, torch.Tensor) else np.asarray(mean_fp, np.int64)
    ls = ls_fp.cpu().numpy().astype(np.int64) if isinstance(ls_fp, torch.Tensor) else np.asarray(ls_fp, np.int64)
    lg = np.asarray(lg_fp, dtype=np.int64)[:, None, None]
    idx = (ls + lg - SCALE_LS0 + SCALE_STEP // 2) // SCALE_STEP
    idx = np.clip(idx, 0, SCALE_COUNT - 1)
    return idx, gain_shift(m, lg_fp, pow2)
