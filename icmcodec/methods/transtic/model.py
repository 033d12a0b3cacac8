"""TransTIC's trainable networks: TIC (the base codec), the prompt generator, the task prompts.

TIC (Lu et al. 2021, as TransTIC uses it) is a mean-scale hyperprior whose analysis
and synthesis interleave strided convolutions with Swin-transformer blocks (STBs,
:mod:`icmcodec.layers.swin`). Two layouts, one code:

* ``hybrid`` (the shipped route): the reconstruction codec's conv + GDN transforms
  with STBs inserted as residual blocks whose output projection starts at zero, in
  g_a after the GDNs at 1/4 and 1/8 and in g_s after the inverse GDNs at 1/8 and 1/4.
  A warm start from a trained hyperprior (:func:`from_hyperprior`) is that codec
  exactly; MSE fine-tuning then trains the blocks.
* ``tic``: the paper's layout, a Swin block after every strided (de)convolution but the
  last, without GDN; selectable by name (``tic-paper``: N=128, M=192, window 8).

In both, h_s stays the integer-exact conv stack of the hyperprior (its output drives
the entropy coder and must be identical on every machine), so TIC's Swin hyper
synthesis is not used; h_a may be anything float and stays conv.

Prompts (TransTIC, Chen et al. 2023, section 3.3), trained per task with TIC frozen:

* :class:`PromptGenerator` sees the input picture and produces *instance* prompts for
  the first two STBs of g_a: one map per Swin layer at half the block's resolution,
  which :class:`~icmcodec.layers.swin.SwinLayer` partitions into a quarter of a
  window's tokens (16 prompts for an 8 x 8 window), keys and values only;
* :class:`~icmcodec.layers.swin.TaskPrompts` holds the decoder's *task* prompts, one
  set of 16 tokens per Swin layer of g_s, shared by every window.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from compressai.layers import GDN

from icmcodec.layers.swin import SwinBlock, TaskPrompts
from icmcodec.methods.hyperprior.model import GainedHyperprior
from icmcodec.methods.hyperprior.transforms import HyperpriorConfig, conv, deconv

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
        gdn = gdn or (lambda c, inverse: GDN(c, inverse=inverse))
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


class TIC(GainedHyperprior):
    """The base codec: the hyperprior with Swin blocks in g_a and g_s (see above)."""

    def __init__(self, cfg: TransticConfig):
        super().__init__(cfg)
        self.g_a, self.g_s = build_tic_transforms(cfg)

    def adapt_warm_start(self, state: dict, source_arch: dict) -> dict:
        """For ``icmcodec.train --init``: a hyperprior's tensors, renumbered for the hybrid
        layout (a TIC's state passes through unchanged)."""
        if "layout" in source_arch:
            return state
        if self.cfg.layout != "hybrid":
            raise ValueError("only the hybrid TIC layout warm-starts from a hyperprior")
        return renumber_hyperprior_state(state)

    def forward(self, x: torch.Tensor, levels: torch.Tensor, enc_prompts: list | None = None,
                dec_prompts: list | None = None) -> dict:
        return self.rd_forward(self.g_a(x, enc_prompts), levels, lambda y: self.g_s(y, dec_prompts))


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


class TransTIC(nn.Module):
    """The per-task prompt set: the generator (encoder side) and the task prompts
    (decoder side). TIC itself is not part of it: it is frozen and shipped once."""

    def __init__(self, cfg: TransticConfig, tic: TIC):
        super().__init__()
        self.generator = PromptGenerator(cfg, prompted_scales(tic.g_a))
        blocks = [m for _, m in tic.g_s.blocks()]
        self.task_prompts = TaskPrompts([(cfg.N, len(b.layers)) for b in blocks], tokens=cfg.prompt_tokens)

    def forward(self, tic: TIC, x: torch.Tensor, levels: torch.Tensor, encoder: bool = True, decoder: bool = True):
        """TIC's training forward with this prompt set (either side may be left out,
        for the ablations)."""
        return tic(x, levels, self.generator(x) if encoder else None, self.task_prompts.per_block() if decoder else None)


def from_hyperprior(hp: GainedHyperprior, cfg: TransticConfig) -> TIC:
    """A hybrid TIC that is ``hp`` exactly: every tensor copied, the g_a / g_s layers
    renumbered around the inserted blocks, whose projections start at zero."""
    if cfg.layout != "hybrid":
        raise ValueError("only the hybrid layout warm-starts from a hyperprior")
    tic = TIC(cfg)
    missing, unexpected = tic.load_state_dict(renumber_hyperprior_state(hp.state_dict()), strict=False)
    new_blocks = tuple(f"{part}.{i}." for part in ("g_a", "g_s") for i, _ in getattr(tic, part).blocks())
    if unexpected or any(not k.startswith(new_blocks) for k in missing):
        raise ValueError(f"warm start does not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return tic


def renumber_hyperprior_state(state: dict) -> dict:
    """A hyperprior's state dict with its g_a / g_s layer indices moved to the hybrid's."""
    moved = {"g_a": _renumber(HYBRID_AFTER_A), "g_s": _renumber(HYBRID_AFTER_S)}
    out = {}
    for k, v in state.items():
        part, _, rest = k.partition(".")
        if part in moved:
            i, _, leaf = rest.partition(".")
            k = f"{part}.{moved[part][int(i)]}.{leaf}"
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
