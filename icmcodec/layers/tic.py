"""TIC's transforms and configuration (Lu et al. 2021): the base that TransTIC prompts
and MPA puts its paths into, so both methods build it from here, not from each other.

TIC is a mean-scale hyperprior whose analysis and synthesis interleave strided
convolutions with Swin-transformer blocks (STBs, :mod:`icmcodec.layers.swin`). Two
layouts, one code:

* ``hybrid`` (the shipped ``tic-hybrid``): the reconstruction codec's conv + GDN
  transforms with STBs inserted as residual blocks whose output projection starts at
  zero, in g_a after the GDNs at 1/4 and 1/8 and in g_s after the inverse GDNs at 1/8
  and 1/4;
* ``tic``: the paper's layout, a Swin block after every strided (de)convolution but the
  last, without GDN.

The configuration keeps TransTIC's prompt sizes (``prompt_tokens``, ``generator_width``)
because shipped TIC models carry them in their ``arch``; TIC itself does not use them.
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
class TicConfig(HyperpriorConfig):
    layout: str = "hybrid"  # or "tic"
    window: int = 8
    depth: int = 2  # Swin layers per block (every second one shifted)
    heads: int = 4
    mlp_ratio: float = 2.0
    prompt_tokens: int = 16  # TransTIC: task prompts per decoder Swin layer
    generator_width: int = 32  # TransTIC: the prompt generator's width

    @classmethod
    def from_dict(cls, d: dict) -> "TicConfig":
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d


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


def _stb(cfg: TicConfig, dim: int, zero_init: bool) -> SwinBlock:
    return SwinBlock(dim, cfg.depth, cfg.heads, cfg.window, cfg.mlp_ratio, zero_init=zero_init)


def build_tic_transforms(cfg: TicConfig, gdn=None) -> tuple[PromptedSequential, PromptedSequential]:
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


def renumber_hyperprior_state(state: dict) -> dict:
    """A hyperprior's state dict with its g_a / g_s layer indices moved to the hybrid's."""
    moved = {"g_a": _renumber(HYBRID_AFTER_A), "g_s": _renumber(HYBRID_AFTER_S)}
    out = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        prefix = ""
        if head == "float":  # a shipped model's key (float.g_a.3.weight)
            prefix, (head, _, rest) = "float.", rest.partition(".")
        if head in moved:
            i, _, leaf = rest.partition(".")
            k = f"{prefix}{head}.{moved[head][int(i)]}.{leaf}"
        out[k] = v
    return out


def _renumber(after: tuple[int, ...], n: int = 7) -> dict[int, int]:
    """Old index -> new index of a 7-layer transform with blocks inserted after ``after``."""
    out, shift = {}, 0
    for i in range(n):
        out[i] = i + shift
        if i in after:
            shift += 1
    return out
