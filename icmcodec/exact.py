"""Exact integer arithmetic for every number that drives the entropy coder.

A learned codec decodes only if the decoder derives the *same* table index and mean
for every latent symbol as the encoder did. Float convolutions differ between CPUs,
thread counts and GPUs, so this path is integer by construction (Balle et al. 2019,
"Integer networks for data compression"):

* Values are fixed-point integers: activations carry ``ACT_FRAC`` fractional bits,
  weights ``W_FRAC``; biases ``ACT_FRAC + W_FRAC``.
* They are held in float64 tensors, where every integer of magnitude below 2**53 is
  exact. The bounds below keep every product and every partial sum of a convolution
  under 2**53, so the result is the exact integer whatever the summation order,
  blocking or device (CPU BLAS, cuBLAS: float64 has no TF32-style shortcuts).
  ``|activation| <= ACT_LIMIT`` (clamped), ``|weight| <= W_LIMIT`` and
  ``|bias| <= B_LIMIT`` (checked at export), at most ``MAX_FAN_IN`` terms:
  ``2**22 * 2**16 * 2**13 + 2**51 < 2**53``.
* Rescaling is ``floor(x / 2**W_FRAC)``: a power-of-two division (exact) and a floor
  (exact). ReLU and clamping are exact; pixel shuffle only moves values.
* Quality enters as an integer addition of log2 gains (linear interpolation on a
  1/256 quality grid with integer arithmetic), scale indices come from integer
  division, and gained means use a baked integer table of ``2**(f/1024)``.

Nothing here is trained: :func:`quantize_hyper_synthesis` converts the trained float
``h_s`` once at export; the float network is then never used for coding again.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ACT_FRAC = 10
W_FRAC = 14
ACT_LIMIT = 1 << 22
W_LIMIT = 1 << 16
B_LIMIT = 1 << 51
MAX_FAN_IN = 1 << 13
QUALITY_FRAC = 8  # quality grid: 1/256

# Scale table: scale[k] = 2 ** ((SCALE_LS0 + k * SCALE_STEP) / 2**ACT_FRAC), k < SCALE_COUNT.
# Integer literals on purpose: the index rule must not depend on a float log.
SCALE_LS0 = -3261  # log2(0.11) * 1024
SCALE_STEP = 182  # (log2(256) - log2(0.11)) / 63 * 1024
SCALE_COUNT = 64
POW2_BITS = 16  # the pow2 table holds round(2**(f/1024) * 2**16)


def scale_table() -> np.ndarray:
    return 2.0 ** ((SCALE_LS0 + SCALE_STEP * np.arange(SCALE_COUNT)) / 2**ACT_FRAC)


def pow2_table() -> np.ndarray:
    """round(2**(f/1024) * 2**16) for f in 0..1023; baked into each model file."""
    f = np.arange(1 << ACT_FRAC, dtype=np.float64)
    return np.round(2.0 ** (f / (1 << ACT_FRAC)) * (1 << POW2_BITS)).astype(np.int64)


def _floor_shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.floor(x / float(1 << bits))


def quantize_hyper_synthesis(h_s) -> dict[str, np.ndarray]:
    """Trained float ``HyperSynthesis`` -> integer weights/biases (checked bounds)."""
    out = {}
    for i, conv in enumerate(h_s.convs):
        w = np.round(conv.weight.detach().double().numpy() * (1 << W_FRAC)).astype(np.int64)
        b = np.round(conv.bias.detach().double().numpy() * (1 << (W_FRAC + ACT_FRAC))).astype(np.int64)
        if np.abs(w).max() > W_LIMIT:
            raise ValueError(f"h_s conv {i}: weight {np.abs(w).max() / (1 << W_FRAC):.2f} too large for the exact path")
        if np.abs(b).max() > B_LIMIT or w[0].size > MAX_FAN_IN:
            raise ValueError(f"h_s conv {i}: bias or fan-in beyond the exact path's bounds")
        out[f"{i}.weight"] = w
        out[f"{i}.bias"] = b
    return out


class ExactHyperSynthesis:
    """Integer twin of ``HyperSynthesis``; same plan of convs, shuffles and ReLUs."""

    plan = ((True, True), (True, True), (False, False))

    def __init__(self, params: dict[str, np.ndarray], device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.layers = []
        for i in range(len(self.plan)):
            w = torch.from_numpy(np.asarray(params[f"{i}.weight"], dtype=np.float64)).to(self.device)
            b = torch.from_numpy(np.asarray(params[f"{i}.bias"], dtype=np.float64)).to(self.device)
            if w.abs().max() > W_LIMIT or b.abs().max() > B_LIMIT or w[0].numel() > MAX_FAN_IN:
                raise ValueError("exact-path parameters out of bounds")
            self.layers.append((w, b))

    @staticmethod
    def _conv3x3(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Nine shifted matrix products, summed: every term is an exact integer, so the
        # order of the sums does not matter. (No cuDNN: its Winograd/FFT paths are not exact.)
        c, h, wd = x.shape
        xp = F.pad(x, (1, 1, 1, 1))
        acc = b[:, None].expand(-1, h * wd).clone()
        for dy in range(3):
            for dx in range(3):
                patch = xp[:, dy : dy + h, dx : dx + wd].reshape(c, h * wd)
                acc += w[:, :, dy, dx] @ patch
        return acc.reshape(-1, h, wd)

    def __call__(self, z_fp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_fp``: (Nz, h, w) fixed-point ints -> (mean_fp, log2_scale_fp), each (M, 4h, 4w)."""
        x = z_fp.to(self.device, torch.float64)
        if x.abs().max() > ACT_LIMIT:
            x = x.clamp(-ACT_LIMIT, ACT_LIMIT)
        for (w, b), (shuffle, relu) in zip(self.layers, self.plan):
            x = _floor_shift(self._conv3x3(x, w, b), W_FRAC)
            if shuffle:
                x = F.pixel_shuffle(x[None], 2)[0]
            if relu:
                x = x.clamp_(min=0)
            x = x.clamp_(-ACT_LIMIT, ACT_LIMIT)
        mean, log2_scale = x.chunk(2, dim=0)
        return mean, log2_scale


EXTRAPOLATE_LEVELS = 4  # how far below level 0 a model's quality_range may reach


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


def entropy_params(mean_fp: torch.Tensor, ls_fp: torch.Tensor, lg_fp: np.ndarray, pow2: np.ndarray):
    """Exact (scale index, gained mean) for every latent.

    ``mean_fp``/``ls_fp``: (M, H, W) fixed-point outputs of the exact h_s;
    ``lg_fp``: (M,) integer log2 gains. Returns int64 numpy arrays ``idx`` (M, H, W)
    and ``mean_g_fp`` (fixed-point, ACT_FRAC bits) of ``mean * 2**lg``.
    """
    m = mean_fp.cpu().numpy().astype(np.int64)
    ls = ls_fp.cpu().numpy().astype(np.int64)
    lg = np.asarray(lg_fp, dtype=np.int64)[:, None, None]
    idx = (ls + lg - SCALE_LS0 + SCALE_STEP // 2) // SCALE_STEP
    idx = np.clip(idx, 0, SCALE_COUNT - 1)
    ipart, fpart = lg >> ACT_FRAC, lg & ((1 << ACT_FRAC) - 1)
    g = np.asarray(pow2, dtype=np.int64)[fpart]  # 2**(fpart/1024) with 16 fractional bits
    mg = (m * g) >> POW2_BITS
    mg = np.where(ipart >= 0, mg << np.maximum(ipart, 0), mg >> np.maximum(-ipart, 0))
    return idx, mg
