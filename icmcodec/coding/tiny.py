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
