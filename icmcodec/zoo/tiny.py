"""A tiny, seeded, untrained model for tests and examples (timm's ``test_*`` habit).

Every weight is drawn from numpy's PCG64 generator, so the model, and therefore the
bytes it encodes, depend on nothing but the seed (not on torch's RNG or version).
``write_tiny_model(folder)`` saves it as a regular model folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from icmcodec.methods.hyperprior.export import export_state, make_config, serialize
from icmcodec.methods.hyperprior.model import GainedHyperprior
from icmcodec.methods.hyperprior.transforms import HyperpriorConfig

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


def _write(folder: str | Path, config: dict, blob: bytes) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(blob)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def write_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    return _write(folder, *tiny_model_bytes(seed))


def tiny_codec(seed: int = 0, device: str = "cpu"):
    from safetensors.numpy import load

    from icmcodec.methods.hyperprior.codec import HyperpriorCodec
    from icmcodec.zoo import model_hash

    config, blob = tiny_model_bytes(seed)
    return HyperpriorCodec(config, load(blob), model_hash(blob), device)


def tiny_context_model(seed: int = 0):
    """The tiny hyperprior of ``seed`` with seeded context nets (last layers non-zero,
    so the context changes the entropy parameters)."""
    from icmcodec.methods.context.model import ContextConfig, GainedContext

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
    from icmcodec.methods.context.export import export_state as ctx_export

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
    return _write(folder, *tiny_context_bytes(seed))


TINY_TRANSTIC = dict(window=4, depth=2, heads=2, prompt_tokens=4, generator_width=8)


def tiny_transtic_model(seed: int = 0, active: bool = True):
    """The tiny hyperprior of ``seed`` as a hybrid TIC. ``active``: the Swin blocks'
    zero projections get seeded weights (as after training), so blocks and prompts act;
    otherwise it is the tiny hyperprior exactly."""
    from icmcodec.methods.transtic.model import TransticConfig, from_hyperprior

    cfg = TransticConfig(**{**TINY.to_dict(), "lambdas": TINY.lambdas, **TINY_TRANSTIC})
    tic = from_hyperprior(tiny_float_model(seed), cfg)
    # every block weight from numpy's generator (torch's initialisation follows its global RNG)
    rng = np.random.default_rng(seed + 2000)
    with torch.no_grad():
        for _, blk in tic.g_a.blocks() + tic.g_s.blocks():
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
    return tic.eval()


def tiny_transtic_bytes(seed: int = 0, active: bool = True) -> tuple[dict, bytes]:
    from icmcodec.methods.transtic.export import export_state as tt_export

    model = tiny_transtic_model(seed, active)
    name = f"test-tiny-transtic-{seed}" + ("" if active else "-identity")
    return make_config(name, model.cfg, "transtic", default=False), serialize(tt_export(model))


def write_tiny_transtic_model(folder: str | Path, seed: int = 0, active: bool = True) -> Path:
    return _write(folder, *tiny_transtic_bytes(seed, active))


def write_tiny_transtic_adapter(folder: str | Path, base_folder: str | Path, tasknet_folder: str | Path, task: str,
                          seed: int = 0, encoder: bool = True, decoder: bool = True) -> bytes:
    """A seeded (untrained) TransTIC prompt set for the tiny TIC in ``base_folder`` and
    the task network in ``tasknet_folder``; returns its hash."""
    from icmcodec.methods.transtic.export import trainable_from_state, write_adapter
    from icmcodec.methods.transtic.model import TransTIC
    from icmcodec.zoo import entry_at, load_state

    config, state, base_hash = load_state(entry_at(base_folder))
    tic = trainable_from_state(config, state)
    with torch.random.fork_rng():  # seeded, without moving the caller's RNG
        torch.manual_seed(seed + 3000)
        ps = TransTIC(tic.cfg, tic)
    return write_adapter(ps, Path(folder), name=Path(folder).name, task=task, base_hash=base_hash,
                            tasknet_hash=entry_at(tasknet_folder).hash(), encoder=encoder, decoder=decoder)


# a PVT small enough for tests; the tiny task networks of the test suite use it too, so a
# tiny Prompt-ICM base's extractor and their backbones have the same architecture
TINY_PVT = {"embed_dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "mlp_ratios": [2, 2, 2, 2]}


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
    return _write(folder, *tiny_prompt_icm_bytes(seed))


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
