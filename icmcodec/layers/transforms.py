"""The conv + GDN transforms and the base config every method's config extends, shared
by training and coding (every method: the hyperprior's layouts, TIC's and Prompt-ICM's
convolutions, everyone's hyper analysis).

Training builds them with compressai's GDN (re-parametrised, trainable); coding
builds the same ``nn.Sequential`` layouts with :class:`FixedGDN`, which holds the
*effective* beta and gamma baked at export. So the coding path never imports
compressai (whose import alone takes seconds) and the state-dict keys line up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class HyperpriorConfig:
    """Everything needed to rebuild the network; saved beside every checkpoint."""

    N: int = 96  # width of g_a / g_s
    M: int = 128  # latent channels (y)
    Nz: int = 64  # hyper-latent channels (z)
    Nh: int = 96  # width of h_s
    levels: int = 6  # trained quality levels 0..levels-1
    lambdas: tuple = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HyperpriorConfig":
        d = dict(d)
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


class FixedGDN(nn.Module):
    """GDN / inverse GDN with fixed effective parameters (inference only).

    ``y = x / sqrt(beta + gamma @ x**2)``, or ``x * sqrt(...)`` when inverse.
    """

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.register_buffer("beta", torch.ones(channels))
        self.register_buffer("gamma", torch.eye(channels) * 0.1)

    # at coding time a large input is normalised a band of rows at a time: GDN is
    # pointwise in space, and whole it holds four picture-sized tensors at once (x, x**2,
    # the norm, the result), the largest of a tile at the picture's 1/2 resolution
    BAND_VALUES = 1 << 22

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x[0, :, :1].numel() * x.shape[-2] <= self.BAND_VALUES:
            return self._normalise(x)
        out = torch.empty_like(x)
        rows = max(1, self.BAND_VALUES // x[0, :, :1].numel())
        for r in range(0, x.shape[-2], rows):
            out[..., r:r + rows, :] = self._normalise(x[..., r:r + rows, :])
        return out

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        norm = F.conv2d(x * x, self.gamma.reshape(c, c, 1, 1), self.beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


GDNFactory = Callable[[int, bool], nn.Module]


def build_transforms(cfg: HyperpriorConfig, gdn: GDNFactory = FixedGDN) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(g_a, g_s, h_a) for a config; ``gdn(channels, inverse)`` makes each GDN."""
    N, M = cfg.N, cfg.M
    g_a = nn.Sequential(conv(3, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, M))
    g_s = nn.Sequential(
        deconv(M, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, 3)
    )
    return g_a, g_s, hyper_analysis(cfg)


def hyper_analysis(cfg: HyperpriorConfig) -> nn.Module:
    """h_a: y -> z, 4x down-sampling (every method's hyperprior uses this layout)."""
    N, M, Nz = cfg.N, cfg.M, cfg.Nz
    return nn.Sequential(
        conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, Nz)
    )
