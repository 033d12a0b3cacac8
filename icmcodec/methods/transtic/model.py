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

import torch
import torch.nn as nn

from icmcodec.layers.swin import TaskPrompts
from icmcodec.coding.hyperprior_net import GainedHyperprior
# the coding-time half lives in .transforms (no compressai); its names are this module's too
from icmcodec.layers.tic import renumber_hyperprior_state
from icmcodec.methods.transtic.transforms import (HYBRID_AFTER_A, HYBRID_AFTER_S, NAMED,  # noqa: F401
                                                  PromptedSequential, PromptGenerator, TransticConfig,
                                                  build_tic_transforms, prompted_scales)


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
