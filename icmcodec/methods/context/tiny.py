"""A tiny, seeded context model for tests: the tiny hyperprior with seeded context nets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icmcodec.coding.export import make_config, serialize
from icmcodec.coding.tiny import TINY, tiny_float_model
from icmcodec.zoo import write_model


def tiny_context_model(seed: int = 0):
    """The tiny hyperprior of ``seed`` with seeded context nets (last layers non-zero,
    so the context changes the entropy parameters)."""
    from icmcodec.coding.context_config import ContextConfig
    from icmcodec.coding.context_net import GainedContext

    cfg = ContextConfig(**{**TINY.to_dict(), "lambdas": TINY.lambdas, "slices": (4, 4, 8), "hidden": 8})
    model = GainedContext(cfg)
    model.load_state_dict(tiny_float_model(seed).state_dict(), strict=False)
    rng = np.random.default_rng(seed + 1000)
    with torch.no_grad():
        for name, p in model.ctx.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            scale = 0.3 / np.sqrt(fan_in) if p.dim() > 1 else 0.05
            p.copy_(torch.from_numpy(rng.normal(0, scale, p.shape)))
    return model.eval()


def tiny_context_bytes(seed: int = 0) -> tuple[dict, bytes]:
    from icmcodec.coding.export import export_context_state as ctx_export

    model = tiny_context_model(seed)
    config = make_config(f"test-tiny-context-{seed}", model.cfg, "context", default=False)
    return config, serialize(ctx_export(model))


def tiny_context_codec(seed: int = 0, device: str = "cpu"):
    from safetensors.numpy import load

    from icmcodec.methods.context.codec import ContextCodec
    from icmcodec.zoo import model_hash

    config, blob = tiny_context_bytes(seed)
    return ContextCodec(config, load(blob), model_hash(blob), device)


def write_tiny_context_model(folder: str | Path, seed: int = 0) -> Path:
    write_model(folder, *tiny_context_bytes(seed))
    return Path(folder)
