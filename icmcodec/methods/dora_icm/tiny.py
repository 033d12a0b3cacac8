"""A tiny, seeded DoRA-ICM set for tests: the real Lite0 layout with PCG64-drawn backbone
weights (named ``seeded:SEED`` in its config, so the codec rebuilds the same backbone on
any machine), non-zero adapters, and small entropy model and decoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icmcodec.methods.dora_icm.codec import seeded_backbone
from icmcodec.methods.dora_icm.model import DoraIcm, DoraIcmConfig

TINY_DORA = dict(task="semseg", classes=11, feat=13, Nz=8, Nh=16, hidden=8, levels=3, lambdas=(0.5, 1.0, 2.0),
                 dims=(16, 8, 8), heads=2, rank=2, alpha=2.0)


def tiny_dora_model(seed: int = 0, **overrides) -> DoraIcm:
    from icmcodec.tasks.backbone import input_stats

    cfg = DoraIcmConfig(**{**TINY_DORA, **overrides})
    model = DoraIcm(cfg, seeded_backbone(cfg, seed), *input_stats(cfg.backbone))
    model.encoder.adapt()
    rng = np.random.default_rng(seed + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("encoder.backbone.") and ".lora_" not in name:
                continue
            if name.endswith("lora_magnitude_vector"):
                p.mul_(torch.from_numpy(rng.uniform(0.9, 1.1, p.shape)).float())
            elif p.dim() > 1:
                p.copy_(torch.from_numpy(rng.normal(0, 0.5 / np.sqrt(p[0].numel()), p.shape)))
            elif name.startswith("entropy.entropy_bottleneck"):
                continue
            else:
                p.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, p.shape)))
    return model.eval()


# a user-brought ViT: a small EVA-02 (random), 16-pixel patches so its features are at 1/16,
# DoRA on its attention's q/k/v projection (timm fuses them into one ``qkv``)
TINY_EVA = dict(backbone="eva02_tiny_patch14_224", feature_index=-1, backbone_channels=192, targets="qkv",
                backbone_args={"patch_size": 16, "img_size": 256, "dynamic_img_size": True})


def write_tiny_dora_model(folder: str | Path, seed: int = 0, **overrides) -> Path:
    from icmcodec.methods.dora_icm.export import export_model

    name = f"test-tiny-dora-{seed}" + ("-" + overrides["backbone"] if "backbone" in overrides else "")
    return export_model(tiny_dora_model(seed, **overrides), Path(folder), name, f"seeded:{seed}", default=False)
