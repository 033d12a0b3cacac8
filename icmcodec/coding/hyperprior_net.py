"""The gained mean-scale hyperprior codec: icm's base codec for people (``recon``).

The trainable network (``GainedHyperprior``; compressai's GDN and factorized prior)
with the shape the exact decoder path needs:

* ``g_a`` / ``g_s``: the analysis and synthesis transforms (conv + GDN, Balle et al.).
  They run in float; their rounding noise can change pixels, never decoded symbols.
* ``h_a``: hyper analysis, float, encoder only.
* ``h_s``: hyper synthesis built only from 3x3 convolutions, pixel shuffles and ReLUs,
  so that :mod:`icmcodec.exact` can run it in exact integer arithmetic at coding time.
  It predicts, per latent channel, the mean and the *log2* scale of the *un-gained*
  latent ``y``.
* variable rate by gain vectors (Cui et al., "Asymmetric gained deep image
  compression"): the coded latent is ``y' = y * 2**lg`` with one learned log2-gain
  vector per quality level; fractional qualities interpolate ``lg`` linearly, which
  is exponential interpolation of the gain. Scaling ``y`` by ``g`` scales its mean and
  scale by ``g`` too, so the hyperprior never needs to know the quality and the
  quality enters the exact path only as an integer addition in the log2 domain.
"""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN

from icmcodec.layers.transforms import HyperpriorConfig, build_transforms

# The scale table of the Gaussian conditional: log2-uniform between these bounds.
SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64


class HyperSynthesis(nn.Module):
    """h_s: z_hat -> (mean, log2 scale) of y, 4x up-sampling.

    Only ``Conv2d(3x3, stride 1, zero padding)``, ``PixelShuffle(2)`` and ``ReLU`` in
    a fixed order: exactly the operations :class:`icmcodec.exact.ExactHyperSynthesis`
    reproduces with integers.
    """

    def __init__(self, Nz: int, Nh: int, M: int):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(Nz, 4 * Nh, 3, padding=1),
                nn.Conv2d(Nh, 4 * Nh, 3, padding=1),
                nn.Conv2d(Nh, 2 * M, 3, padding=1),
            ]
        )
        # (pixel shuffle after?, relu after?) for each conv
        self.plan = ((True, True), (True, True), (False, False))

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = z_hat
        for layer, (shuffle, relu) in zip(self.convs, self.plan):
            h = layer(h)
            if shuffle:
                h = F.pixel_shuffle(h, 2)
            if relu:
                h = F.relu(h)
        mean, log2_scale = h.chunk(2, dim=1)
        return mean, log2_scale


class GainedHyperprior(nn.Module):
    """Mean-scale hyperprior with per-level gain vectors (float, trainable)."""

    def __init__(self, cfg: HyperpriorConfig):
        super().__init__()
        self.cfg = cfg
        M, Nz = cfg.M, cfg.Nz
        self.g_a, self.g_s, self.h_a = build_transforms(cfg, lambda c, inverse: GDN(c, inverse=inverse))
        self.h_s = HyperSynthesis(Nz, cfg.Nh, M)
        self.entropy_bottleneck = EntropyBottleneck(Nz)
        # log2 gains, one row per quality level; start spread over a 16x range so the
        # levels begin with distinct rates and the lambdas pull them apart from there.
        init = torch.linspace(-2.0, 2.0, cfg.levels)[:, None].repeat(1, M)
        self.log2_gain = nn.Parameter(init)

    @staticmethod
    def gaussian_likelihood(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        scale = scale.clamp(min=SCALE_MIN)
        d = (v - mean).abs()
        upper = 0.5 * torch.erfc(-(0.5 - d) / (scale * math.sqrt(2)))
        lower = 0.5 * torch.erfc(-(-0.5 - d) / (scale * math.sqrt(2)))
        return (upper - lower).clamp(min=1e-9)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> dict:
        """Training forward pass. ``levels``: one integer quality level per image."""
        return self.rd_forward(self.g_a(x), levels, self.g_s)

    def rd_forward(self, y: torch.Tensor, levels: torch.Tensor, synthesis) -> dict:
        """Everything after the analysis: hyper path, gains, quantisation, likelihoods and
        ``synthesis`` of the quantised latent (methods that prompt g_s pass their own)."""
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        mean, log2_scale = self.h_s(z_hat)
        lg = self.log2_gain[levels][:, :, None, None]
        gain = torch.exp2(lg)
        yg, mean_g = y * gain, mean * gain
        scale_g = torch.exp2(log2_scale.clamp(-8, 12) + lg)
        if self.training:
            y_noisy = yg + torch.empty_like(yg).uniform_(-0.5, 0.5)
            y_lik = self.gaussian_likelihood(y_noisy, mean_g, scale_g)
            # straight-through rounding for the synthesis (Minnen & Singh 2020)
            y_q = yg + (torch.round(yg - mean_g) + mean_g - yg).detach()
        else:
            y_q = torch.round(yg - mean_g) + mean_g
            y_lik = self.gaussian_likelihood(y_q, mean_g, scale_g)
        x_hat = synthesis(y_q / gain)
        return {"x_hat": x_hat, "y_lik": y_lik, "z_lik": z_lik}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()
