"""The context model: the gained hyperprior plus channel and spatial context (trainable).

Entropy parameters of the latent ``y`` come from three sources (He et al., CVPR 2021,
"Checkerboard context model"; Minnen & Singh, ICIP 2020, "Channel-wise autoregressive
entropy models"; He et al., CVPR 2022, ELIC's uneven channel groups):

* the hyper synthesis (as in the hyperprior): a mean and a log2 scale per latent;
* channel context: the channels are split into slices of uneven size (small first:
  the first channels carry the most energy); slice ``k`` sees the decoded slices before
  it through ``cc[k]`` (3x3 conv, ReLU);
* spatial context: each slice is coded in two passes over a checkerboard. *Anchors*
  ((row + column) even) come first with no spatial context; the rest see the decoded
  anchors of their own slice through ``sc[k]`` (5x5 conv over the anchor-masked slice).

``ep[k]`` (1x1 conv, ReLU, 1x1 conv) turns the concatenation [hyper mean, hyper log2
scale, channel context, spatial context] into *corrections* added to the hyper mean
and log2 scale. Its last layer starts at zero, so a warm start from a hyperprior model
reproduces that model exactly and training can only improve on it. Every layer is a
stride-1, same-padded conv followed by ReLU or nothing: the shape the exact integer
twin (:mod:`icmcodec.coding.slices`) runs bit-exactly at coding time.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from icmcodec.coding.checkerboard import anchor_mask
from icmcodec.coding.context_config import ContextConfig
from icmcodec.coding.hyperprior_net import GainedHyperprior


class ContextNets(nn.Module):
    """The per-slice context and parameter networks (float)."""

    def __init__(self, cfg: ContextConfig):
        super().__init__()
        H = cfg.hidden
        self.cc = nn.ModuleList()
        self.sc = nn.ModuleList()
        self.ep = nn.ModuleList()
        for k, (c0, c1) in enumerate(cfg.slice_bounds()):
            m = c1 - c0
            self.cc.append(nn.Conv2d(c0, H, 3, padding=1) if k else nn.Identity())
            self.sc.append(nn.Conv2d(m, H, 5, padding=2))
            last = nn.Conv2d(H, 2 * m, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.ep.append(nn.Sequential(nn.Conv2d(2 * m + 2 * H, H, 1), nn.ReLU(), last))

    def channel(self, k: int, y_prev: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return like.new_zeros(like.shape[0], self.sc[0].out_channels, *like.shape[2:])
        return torch.relu(self.cc[k](y_prev))

    def params(self, k: int, mean_h, ls_h, cc, sc):
        d = self.ep[k](torch.cat([mean_h, ls_h, cc, sc], 1))
        dm, dl = d.chunk(2, 1)
        return mean_h + dm, ls_h + dl


class GainedContext(GainedHyperprior):
    """Gained hyperprior + checkerboard and channel-slice context (float, trainable)."""

    def __init__(self, cfg: ContextConfig):
        super().__init__(cfg)
        self.ctx = ContextNets(cfg)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> dict:
        out = self.entropy(self.g_a(x), levels)
        out["x_hat"] = self.g_s(out.pop("y_hat"))
        return out

    def entropy(self, y: torch.Tensor, levels: torch.Tensor) -> dict:
        """Everything between the analysis and the synthesis: the decoded latent
        (un-gained) and the likelihoods of y and z. Training the entropy model alone
        (``fit_entropy``) runs only this, on cached latents."""
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        mean_h, ls_h = self.h_s(z_hat)
        lg = self.log2_gain[levels][:, :, None, None]
        gain = torch.exp2(lg)
        yg = y * gain
        a = anchor_mask(*y.shape[2:], device=y.device)
        y_hat, liks = [], []
        for k, (c0, c1) in enumerate(self.cfg.slice_bounds()):
            sl = slice(c0, c1)
            g = gain[:, sl]
            cc = self.ctx.channel(k, torch.cat(y_hat, 1) if k else None, y)
            # pass 1: anchors, hyper and channel context only
            m1, l1 = self.ctx.params(k, mean_h[:, sl], ls_h[:, sl], cc, torch.zeros_like(cc))
            q1 = self._quantize(yg[:, sl], m1 * g) / g
            # pass 2: the rest also sees the decoded anchors of this slice
            m2, l2 = self.ctx.params(k, mean_h[:, sl], ls_h[:, sl], cc, self.ctx.sc[k](q1 * a))
            mean = torch.where(a.bool(), m1, m2)
            ls = torch.where(a.bool(), l1, l2)
            yk_hat = self._quantize(yg[:, sl], mean * g) / g
            y_hat.append(yk_hat)
            scale_g = torch.exp2(ls.clamp(-8, 12) + lg[:, sl])
            v = yg[:, sl] + torch.empty_like(yg[:, sl]).uniform_(-0.5, 0.5) if self.training else yk_hat * g
            liks.append(self.gaussian_likelihood(v, mean * g, scale_g))
        return {"y_hat": torch.cat(y_hat, 1), "y_lik": torch.cat(liks, 1), "z_lik": z_lik}

    @staticmethod
    def _quantize(v: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """round(v - mean) + mean, with a straight-through gradient."""
        return v + (torch.round(v - mean) + mean - v).detach()
