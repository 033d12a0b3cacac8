"""TransTIC's transforms, configuration and prompt generator: what coding needs.

Kept apart from :mod:`.model` (TIC's training side, built on compressai's entropy
models) so that coding a picture does not import compressai: that import alone adds
about 100 MB to every process (measured with ``benchmarks/large.py``'s peak RSS).
:mod:`.model` re-exports every name here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from icmcodec.layers.swin import SwinBlock
from icmcodec.layers.transforms import HyperpriorConfig, conv, deconv

# where the hybrid layout puts its blocks: after these layers of the hyperprior's
# 7-layer g_a (3: GDN at 1/4, 5: GDN at 1/8) and g_s (1: inverse GDN at 1/8, 3: at 1/4)
HYBRID_AFTER_A = (3, 5)


HYBRID_AFTER_S = (1, 3)


@dataclass(frozen=True)
class TransticConfig(HyperpriorConfig):
    layout: str = "hybrid"  # or "tic"
    window: int = 8
    depth: int = 2  # Swin layers per block (every second one shifted)
    heads: int = 4
    mlp_ratio: float = 2.0
    prompt_tokens: int = 16  # task prompts per decoder Swin layer
    generator_width: int = 32

    @classmethod
    def from_dict(cls, d: dict) -> "TransticConfig":
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d


NAMED = {
    # the paper's size: N=128, M=192, window 8 (Lu et al.'s TIC, Gaussian mean-scale prior)
    "tic-paper": dict(layout="tic", N=128, M=192, Nz=128, Nh=128, window=8, depth=2, heads=4),
    # hp-base with Swin blocks: what ships (see the package docstring)
    "tic-hybrid-base": dict(layout="hybrid", N=128, M=192, Nz=128, Nh=128, window=8, depth=2, heads=4),
}


class PromptedSequential(nn.Sequential):
    """A transform whose Swin blocks take prompts: ``prompts[k]`` (a list, one entry per
    Swin layer) goes to the k-th block; blocks beyond the list get none."""

    def blocks(self) -> list[tuple[int, SwinBlock]]:
        return [(i, m) for i, m in enumerate(self) if isinstance(m, SwinBlock)]

    def forward(self, x: torch.Tensor, prompts: list | None = None) -> torch.Tensor:
        k = 0
        for m in self:
            if isinstance(m, SwinBlock):
                x = m(x, prompts[k] if prompts is not None and k < len(prompts) else None)
                k += 1
            else:
                x = m(x)
        return x


def _stb(cfg: TransticConfig, dim: int, zero_init: bool) -> SwinBlock:
    return SwinBlock(dim, cfg.depth, cfg.heads, cfg.window, cfg.mlp_ratio, zero_init=zero_init)


def build_tic_transforms(cfg: TransticConfig, gdn=None) -> tuple[PromptedSequential, PromptedSequential]:
    """(g_a, g_s) of a layout. ``gdn(channels, inverse)`` for the hybrid's GDNs."""
    N, M = cfg.N, cfg.M
    if cfg.layout == "hybrid":
        if gdn is None:  # training's trainable GDN; coding time passes its fixed one
            from compressai.layers import GDN

            gdn = lambda c, inverse: GDN(c, inverse=inverse)  # noqa: E731
        a = [conv(3, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, M)]
        s = [deconv(M, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, 3)]
        for after in sorted(HYBRID_AFTER_A, reverse=True):
            a.insert(after + 1, _stb(cfg, N, True))
        for after in sorted(HYBRID_AFTER_S, reverse=True):
            s.insert(after + 1, _stb(cfg, N, True))
        return PromptedSequential(*a), PromptedSequential(*s)
    if cfg.layout == "tic":
        a = [conv(3, N), _stb(cfg, N, False), conv(N, N), _stb(cfg, N, False), conv(N, N), _stb(cfg, N, False),
             conv(N, M)]
        s = [deconv(M, N), _stb(cfg, N, False), deconv(N, N), _stb(cfg, N, False), deconv(N, N),
             _stb(cfg, N, False), deconv(N, 3)]
        return PromptedSequential(*a), PromptedSequential(*s)
    raise ValueError(f"unknown TIC layout {cfg.layout!r} (hybrid or tic)")


def prompted_scales(g: PromptedSequential, count: int = 2) -> list[int]:
    """The down-sampling factor at the input of the first ``count`` blocks of g_a."""
    out, scale = [], 1
    for m in g:
        if isinstance(m, nn.Conv2d):
            scale *= m.stride[0]
        if isinstance(m, SwinBlock) and len(out) < count:
            out.append(scale)
    return out


class PromptGenerator(nn.Module):
    """g_p: picture -> instance prompts for the first blocks of g_a.

    A small stride-2 conv trunk down to the deepest prompted block's prompt resolution
    (half the block's own); at each prompted scale a 1x1 head emits one N-channel map
    per Swin layer of that block."""

    def __init__(self, cfg: TransticConfig, scales: list[int]):
        super().__init__()
        c, self.depth, self.dim = cfg.generator_width, cfg.depth, cfg.N
        self.scales = [2 * s for s in scales]  # prompt maps at half the block's resolution
        steps = max(self.scales).bit_length() - 1
        trunk, cin = [], 3
        for _ in range(steps):
            trunk.append(nn.Sequential(nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.GELU()))
            cin = c
        self.trunk = nn.ModuleList(trunk)
        self.heads = nn.ModuleDict({str(s): nn.Conv2d(c, self.dim * self.depth, 1) for s in self.scales})

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        at, h, scale = {}, x, 1
        for step in self.trunk:
            h, scale = step(h), scale * 2
            if str(scale) in self.heads:
                at[scale] = self.heads[str(scale)](h)
        return [list(at[s].split(self.dim, dim=1)) for s in self.scales]
