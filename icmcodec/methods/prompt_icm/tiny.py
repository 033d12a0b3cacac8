"""A tiny, seeded Prompt-ICM for tests: a base on the tiny PVT (the test suite's tiny task
networks use the same backbone) and a seeded adapter for it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icmcodec.coding.export import make_config, serialize
from icmcodec.coding.tiny import tiny_float_model
from icmcodec.tasks.backbone import TINY_PVT
from icmcodec.zoo import write_model


def _seeded(module: torch.nn.Module, rng: np.random.Generator) -> None:
    """Every float parameter of ``module`` from numpy's generator (fan-in scaled)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                v = rng.normal(0, 1 / np.sqrt(fan_in), p.shape)
            elif "norm" in name and name.endswith("weight"):
                v = 1.0 + rng.normal(0, 0.05, p.shape)
            else:
                v = rng.uniform(-0.1, 0.1, p.shape)
            p.copy_(torch.from_numpy(v))


def tiny_prompt_icm_parts(seed: int = 0):
    """(feature codec, extractor) of a tiny Prompt-ICM base on the tiny PVT, seeded."""
    from icmcodec.methods.prompt_icm.model import PromptIcmConfig, build_extractor, make_feature_codec

    cfg = PromptIcmConfig(N=16, M=16, Nz=8, Nh=16, C=8, cond=8, backbone="icm_pvt_nano",
                          backbone_args=tuple(TINY_PVT.items()), extractor_indices=(0, 1, 2))
    rng = np.random.default_rng(seed + 4000)
    codec, extractor = make_feature_codec(cfg), build_extractor(cfg)
    _seeded(extractor, rng)
    ref = tiny_float_model(seed)  # the tiny hyperprior's hyper path and factorized prior
    _seeded(codec.g_a, rng)
    _seeded(codec.g_s, rng)
    with torch.no_grad():
        for name in ("h_a", "h_s", "entropy_bottleneck"):
            getattr(codec, name).load_state_dict(getattr(ref, name).state_dict())
        # as training makes it, the latent's scale grows with the map: q_a and the last
        # SFT's gain are made monotone in m (positive weights through leaky ReLUs), from a
        # gain of 0.25 at m = 0 to about 2 at m = 1, and that SFT adds no shift
        for conv in [m for m in codec.g_a.q_a.modules() if isinstance(m, torch.nn.Conv2d)]:
            conv.weight.abs_()
            conv.bias.zero_()
        g1, g2 = codec.g_a.sft[2].gamma[0], codec.g_a.sft[2].gamma[2]
        g1.weight.abs_()
        g1.bias.zero_()
        g2.weight.copy_(g2.weight.abs() / g2.weight.abs().sum(1, keepdim=True))
        g2.bias.fill_(-0.75)
        for conv in (codec.g_a.sft[2].beta[2],):
            conv.weight.zero_()
            conv.bias.zero_()
        codec.g_a.down[1].weight.mul_(0.02)  # latents within the tables' range (few escapes)
        codec.g_a.down[1].bias.zero_()
    return codec.eval(), extractor.eval()


def tiny_prompt_icm_bytes(seed: int = 0) -> tuple[dict, bytes]:
    from icmcodec.methods.prompt_icm.export import export_state as picm_export

    codec, extractor = tiny_prompt_icm_parts(seed)
    config = make_config(f"test-tiny-prompt-icm-{seed}", codec.cfg, "prompt-icm", default=False)
    config["quality_range"] = [-4.0, 4.0]
    config["task"] = "features"
    return config, serialize(picm_export(codec, extractor))


def write_tiny_prompt_icm_model(folder: str | Path, seed: int = 0) -> Path:
    write_model(folder, *tiny_prompt_icm_bytes(seed))
    return Path(folder)


def write_tiny_prompt_icm_adapter(folder: str | Path, base_folder: str | Path, tasknet_folder: str | Path, task: str,
                              seed: int = 0, uniform: bool = False, finetune: bool = False,
                              contrast: tuple[float, float] | None = None) -> bytes:
    """A seeded (untrained) Prompt-ICM adapter (selector, prompts, head) for the tiny base
    in ``base_folder`` and the task network in ``tasknet_folder``; returns its hash.
    ``contrast``: the selector's learned per-quality contrast parameters (a, b)."""
    from icmcodec.methods.prompt_icm.export import write_adapter
    from icmcodec.methods.prompt_icm.model import InformationSelector, PromptIcmConfig, TaskDecoder, build_extractor
    from icmcodec.tasks.predict import TaskModel
    from icmcodec.zoo import entry_at

    base = entry_at(base_folder)
    cfg = PromptIcmConfig.from_dict(base.config["arch"])
    net = TaskModel.load(tasknet_folder).net
    rng = np.random.default_rng(seed + 5000)
    chans = build_extractor(cfg).channels[:cfg.selector_stages]
    selector = InformationSelector(chans, 8)
    decoder = TaskDecoder(net, finetune=finetune)
    _seeded(selector, rng)
    if contrast:  # the same seeded selector, with the contrast parameters added
        seeded, selector = selector, InformationSelector(chans, 8, contrast=True)
        selector.load_state_dict({**seeded.state_dict(), "contrast": torch.tensor(contrast, dtype=torch.float32)})
    _seeded(decoder.prompts, rng)  # non-zero prompts: they act
    if finetune:
        _seeded(decoder.staged, rng)
    return write_adapter(selector, decoder, Path(folder), name=Path(folder).name, task=task,
                            base_hash=base.hash(), tasknet_hash=entry_at(tasknet_folder).hash(), selector_width=8,
                            uniform=uniform, finetune=finetune, **({"contrast": True} if contrast else {}))
