"""A tiny, seeded, untrained hyperprior network: the start of every method's tiny test model.

Every weight is drawn from numpy's PCG64 generator, so the model, and therefore the
bytes it encodes, depend on nothing but the seed (not on torch's RNG or version).
"""
from __future__ import annotations

import numpy as np
import torch

from icmcodec.coding.hyperprior_net import GainedHyperprior
from icmcodec.layers.transforms import HyperpriorConfig

TINY = HyperpriorConfig(N=16, M=16, Nz=8, Nh=16, levels=3, lambdas=(0.004, 0.016, 0.064))


def tiny_float_model(seed: int = 0) -> GainedHyperprior:
    rng = np.random.default_rng(seed)
    model = GainedHyperprior(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("g_a.", "g_s.", "h_a.", "h_s.")) and name.endswith("weight") and p.dim() == 4:
                fan_in = p[0].numel() if "g_s" not in name else p.shape[0] * p.shape[2] * p.shape[3] // 4
                p.copy_(torch.from_numpy(rng.normal(0, 1 / np.sqrt(fan_in), p.shape)))
            elif name.endswith("bias") and p.dim() == 1:
                p.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, p.shape)))
            elif name.startswith("entropy_bottleneck.biases"):
                p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, p.shape)))
    return model.eval()


# the tiny TIC: the tiny hyperprior with 2-layer Swin blocks of window 4
TINY_TIC = dict(window=4, depth=2, heads=2, prompt_tokens=4, generator_width=8)


def seed_blocks(blocks, seed: int, active: bool = True) -> None:
    """Every weight of TIC's Swin blocks from numpy's generator (torch's initialisation
    follows its global RNG). ``active``: the zero-started output projections get seeded
    weights (as after training), so the blocks act; otherwise they stay the identity."""
    rng = np.random.default_rng(seed + 2000)
    with torch.no_grad():
        for blk in blocks:
            for name, p in blk.named_parameters():
                if name.startswith("proj."):
                    v = rng.normal(0, 0.05, p.shape) if active and name.endswith("weight") else np.zeros(p.shape)
                elif "norm" in name:
                    v = (1.0 if name.endswith("weight") else 0.0) + rng.normal(0, 0.05, p.shape)
                elif p.dim() > 1:
                    v = rng.normal(0, 1 / np.sqrt(p.shape[-1]), p.shape)
                else:
                    v = rng.normal(0, 0.02, p.shape)
                p.copy_(torch.from_numpy(v))


def tiny_tic_state(seed: int = 0, active: bool = True):
    """(config, model-file arrays) of the tiny hybrid TIC of ``seed``, built without
    TransTIC's training code: the tiny hyperprior's exported file, renumbered around the
    blocks, plus the seeded blocks (the arrays TransTIC's tiny model exports)."""
    from icmcodec.coding.export import export_state, make_config
    from icmcodec.layers.tic import TicConfig, build_tic_transforms, renumber_hyperprior_state
    from icmcodec.layers.transforms import FixedGDN

    cfg = TicConfig(**{**TINY.to_dict(), "lambdas": TINY.lambdas, **TINY_TIC})
    state = renumber_hyperprior_state(export_state(tiny_float_model(seed)))
    g_a, g_s = build_tic_transforms(cfg, gdn=lambda c, inverse: FixedGDN(c, inverse))
    seed_blocks([b for _, b in g_a.blocks() + g_s.blocks()], seed, active)
    for part, g in (("g_a", g_a), ("g_s", g_s)):
        for i, blk in g.blocks():
            for k, v in blk.state_dict().items():
                state[f"float.{part}.{i}.{k}"] = v.detach().float().contiguous().numpy()
    name = f"test-tiny-tic-{seed}" + ("" if active else "-identity")
    return make_config(name, cfg, "transtic", default=False), state
