"""TransTIC's transforms, configuration and prompt generator: what coding needs.

Kept apart from :mod:`.model` (TIC's training side, built on compressai's entropy
models) so that coding a picture does not import compressai: that import alone adds
about 100 MB to every process (measured with ``benchmarks/large.py``'s peak RSS).
:mod:`.model` re-exports every name here.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from icmcodec.layers.swin import SwinBlock
# TIC itself is shared with MPA (icmcodec.layers.tic); its names are this module's too
from icmcodec.layers.tic import (HYBRID_AFTER_A, HYBRID_AFTER_S, PromptedSequential,  # noqa: F401
                                 TicConfig, build_tic_transforms)

TransticConfig = TicConfig  # TIC's configuration carries the prompt sizes (see layers.tic)

NAMED = {
    # the paper's size: N=128, M=192, window 8 (Lu et al.'s TIC, Gaussian mean-scale prior)
    "tic-paper": dict(layout="tic", N=128, M=192, Nz=128, Nh=128, window=8, depth=2, heads=4),
    # hp-base with Swin blocks: what ships (see the package docstring)
    "tic-hybrid-base": dict(layout="hybrid", N=128, M=192, Nz=128, Nh=128, window=8, depth=2, heads=4),
}


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
