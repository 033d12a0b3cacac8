"""A tiny, seeded, untrained hyperprior for tests and examples (timm's ``test_*`` habit).

Every weight is drawn from numpy's PCG64 generator, so the model, and therefore the
bytes it encodes, depend on nothing but the seed (not on torch's RNG or version).
``write_tiny_model(folder)`` saves it as a regular model folder (the method spec's
``tiny``). The other methods' tiny models start from this one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icmcodec.methods.hyperprior.export import export_state, make_config, serialize
from icmcodec.methods.hyperprior.model import GainedHyperprior
from icmcodec.methods.hyperprior.transforms import HyperpriorConfig
from icmcodec.zoo import write_model

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


def tiny_model_bytes(seed: int = 0) -> tuple[dict, bytes]:
    config = make_config(f"test-tiny-{seed}", TINY, default=False)
    return config, serialize(export_state(tiny_float_model(seed)))


def write_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    write_model(folder, *tiny_model_bytes(seed))
    return Path(folder)


def tiny_codec(seed: int = 0, device: str = "cpu"):
    from safetensors.numpy import load

    from icmcodec.methods.hyperprior.codec import HyperpriorCodec
    from icmcodec.zoo import model_hash

    config, blob = tiny_model_bytes(seed)
    return HyperpriorCodec(config, load(blob), model_hash(blob), device)
