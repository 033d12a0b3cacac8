"""DoRA: weight-decomposed low-rank adaptation (Liu et al., ICML 2024) of a frozen layer.

A frozen weight ``W0`` (out x in) becomes

    W' = m * (W0 + s * B A) / ||W0 + s * B A||_c

with ``A`` (rank x in, Kaiming-initialised), ``B`` (out x rank, zero-initialised), the
scaling ``s = alpha / rank`` and the magnitude ``m`` (one per output channel, initialised
to ``||W0||_c``), the norm taken per output channel over the inputs (peft's
``weight.norm(p=2, dim=1)``). With ``B = 0`` the adapted layer is the frozen one, so a
fresh adapter changes nothing.

:class:`DoraConv1x1` wraps a pointwise convolution (the MBConv blocks' ``conv_pw`` and
``conv_pwl``), :class:`DoraLinear` a linear map (a ViT's q/k/v projections). Their
tensors carry peft's names without the adapter name (``lora_A.weight``,
``lora_B.weight``, ``lora_magnitude_vector``), so a state trained with peft's
``use_dora=True`` maps over by dropping ``.default``. :func:`merge` folds the adapters into
plain layers for coding (no peft, no extra cost at encode time).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Dora(nn.Module):
    # ``magnitude=False``: plain LoRA (W' = W0 + s B A), for the ablation at equal rank
    def __init__(self, base: nn.Module, rank: int, alpha: float | None, out: int, inp: int, kernel_dims: int,
                 magnitude: bool = True):
        super().__init__()
        self.base_layer = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.scaling = rank, (alpha if alpha is not None else rank) / rank
        shape = (1,) * kernel_dims
        self.lora_A = nn.Module()
        self.lora_A.weight = nn.Parameter(torch.empty(rank, inp, *shape))
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        self.lora_B = nn.Module()
        self.lora_B.weight = nn.Parameter(torch.zeros(out, rank, *shape))
        self.lora_magnitude_vector = nn.Parameter(self._w0().norm(dim=1).detach().clone()) if magnitude else None

    def _w0(self) -> torch.Tensor:
        w = self.base_layer.weight
        return w.reshape(w.shape[0], -1)

    # a model that reads ``layer.weight`` instead of calling the layer (timm's EVA attention
    # with separate q/v biases does ``F.linear(x, self.qkv.weight, bias)``) gets W'
    @property
    def weight(self) -> torch.Tensor:
        return self.merged_weight()

    @property
    def bias(self):
        return self.base_layer.bias

    def merged_weight(self) -> torch.Tensor:
        """W' of the module docstring, shaped as the base layer's weight."""
        w0 = self._w0()
        delta = self.lora_B.weight.reshape(w0.shape[0], -1) @ self.lora_A.weight.reshape(self.rank, -1)
        w = w0 + self.scaling * delta
        if self.lora_magnitude_vector is not None:
            w = self.lora_magnitude_vector[:, None] * w / w.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return w.reshape(self.base_layer.weight.shape)


class DoraConv1x1(_Dora):
    def __init__(self, base: nn.Conv2d, rank: int = 8, alpha: float | None = None, magnitude: bool = True):
        if base.kernel_size != (1, 1) or base.groups != 1:
            raise ValueError("DoraConv1x1 wraps 1x1 convolutions without groups")
        super().__init__(base, rank, alpha, base.out_channels, base.in_channels, 2, magnitude)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base_layer
        return F.conv2d(x, self.merged_weight(), b.bias, b.stride, b.padding)


class DoraLinear(_Dora):
    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float | None = None, magnitude: bool = True):
        super().__init__(base, rank, alpha, base.out_features, base.in_features, 0, magnitude)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.merged_weight(), self.base_layer.bias)


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def targets(backbone: nn.Module, kind: str, first_group: int = 0) -> list[str]:
    """The layers DoRA adapts: ``"pointwise"``, every 1x1 convolution of a conv net's
    block groups from ``first_group`` on (``blocks.G.*``); ``"qkv"``, a ViT's attention
    projections."""
    if kind == "pointwise":
        return [n for n, m in backbone.named_modules()
                if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1 and n.startswith("blocks.")
                and int(n.split(".")[1]) >= first_group]
    if kind == "qkv":
        ends = (".qkv", ".q_proj", ".k_proj", ".v_proj", ".q", ".k", ".v", ".kv")
        return [n for n, m in backbone.named_modules() if isinstance(m, nn.Linear) and n.endswith(ends)]
    raise ValueError(f"unknown DoRA target kind {kind!r} (pointwise or qkv)")


def inject(backbone: nn.Module, names: list[str], rank: int = 8, alpha: float | None = None,
           magnitude: bool = True) -> None:
    """Replace each named layer by its DoRA wrapper (in place; ``magnitude=False``: LoRA)."""
    for n in names:
        m = backbone.get_submodule(n)
        wrap = DoraConv1x1 if isinstance(m, nn.Conv2d) else DoraLinear
        _set(backbone, n, wrap(m, rank, alpha, magnitude))


def adapter_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' tensors (what a per-task file stores of the backbone)."""
    return {k: v for k, v in backbone.state_dict().items()
            if ".lora_A." in k or ".lora_B." in k or k.endswith(".lora_magnitude_vector")}


@torch.no_grad()
def merge(backbone: nn.Module) -> nn.Module:
    """Fold every DoRA wrapper into a plain layer with W' (in place; returns it)."""
    for n, m in list(backbone.named_modules()):
        if isinstance(m, _Dora):
            base = m.base_layer
            base.weight.copy_(m.merged_weight())
            _set(backbone, n, base)
    return backbone
