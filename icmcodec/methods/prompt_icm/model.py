"""Prompt-ICM's networks (Feng et al., CVPR 2024, section 3 and supplementary A, B, E).

* The **general feature extractor** is a frozen ImageNet backbone cut at its first
  4x-down-sampled feature (:mod:`.staged`); that feature ``f`` is what is coded.
* :class:`FeatureCodec`, the **controllable feature codec**: a mean-scale hyperprior on
  ``f / feature_scale`` whose analysis is modulated by spatial feature transforms (SFT,
  Wang et al. 2018; the spatially variable-rate codec of Song et al. 2021) computed from
  an importance map ``m`` in [0, 1] at the feature's resolution (``q_a``). The decoder
  never receives ``m``: it recovers a condition ``w = q_g(z_hat)`` from the side
  information and modulates the synthesis with it (``q_s``). Trained once with the loss
  ``R + mean_hw(lambda(m_hw) * mean_c (f - f_hat)**2)``, ``lambda(m) = lo * (hi/lo)**m``,
  on random maps of the four kinds of supplementary E (:func:`random_maps`), then frozen.
  Its hyper synthesis is the hyperprior's exact integer network (every entropy parameter
  is exact); it has no gain vectors (two all-zero rows keep the shared code paths).
* :class:`InformationSelector`, the **compression prompt** of a task: stage 1-3 features of
  the extractor, projected, up-sampled to stage 1 and fused into ``m`` (supplementary B).
* :class:`ConvPrompt`, the **task-adaptive prompts** for a convolutional backbone: before
  each later stage of the (frozen) task network's backbone, a learned additive prompt
  (one vector per channel) plus a Pro-Tuning-style prompt block (1x1 down, 3x3 depthwise,
  1x1 up, zero-initialised). Visual prompt *tokens* (VPT) need attention to read them; a
  convolutional stage has none, so the prompts are added to its input instead (Pro-Tuning,
  the paper's choice for dense tasks).
* :class:`TaskDecoder`: the task network's frozen later stages with those prompts, and its
  head (trained), on the decoded feature.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icmcodec.layers.transforms import HyperpriorConfig, conv, deconv


@dataclass(frozen=True)
class PromptIcmConfig(HyperpriorConfig):
    """The feature codec and its extractor (saved beside every checkpoint)."""

    N: int = 64
    M: int = 128
    Nz: int = 64
    Nh: int = 96
    levels: int = 2  # gain rows, both zero: rate is set by the importance map
    lambdas: tuple = (1.0, 1.0)  # unused (the map sets lambda per position)
    C: int = 24  # channels of the coded feature
    cond: int = 32  # width of the condition networks q_a, q_g, q_s
    feature_scale: float = 8.0  # the codec sees f / feature_scale (f's std is about 7.7 for Lite0)
    lambda_lo: float = 0.5  # lambda at m = 0 (bits per pixel against mean squared error of f / scale)
    lambda_hi: float = 128.0  # lambda at m = 1
    backbone: str = "tf_efficientnet_lite0"
    backbone_args: tuple = ()  # extra timm constructor arguments as (key, value) pairs (tiny test models)
    selector_stages: int = 3  # features the information selector aggregates (stage 1..3)
    extractor_indices: tuple = (1, 2, 3)  # timm out_indices of stages 1..3 (EfficientNet's 0 is the 2x stem)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["backbone_args"] = [list(kv) for kv in self.backbone_args]
        d["extractor_indices"] = list(self.extractor_indices)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PromptIcmConfig":
        d = dict(d)
        d["backbone_args"] = tuple(tuple(kv) for kv in d.get("backbone_args", ()))
        d["extractor_indices"] = tuple(d.get("extractor_indices", (1, 2, 3)))
        return super().from_dict(d)

    def lam(self, m: torch.Tensor) -> torch.Tensor:
        return self.lambda_lo * (self.lambda_hi / self.lambda_lo) ** m


def build_extractor(cfg: PromptIcmConfig, weights=None):
    """The general feature extractor: the backbone up to the selector's last stage."""
    from icmcodec.methods.prompt_icm.staged import Staged
    from icmcodec.tasks.backbone import create_backbone

    bb = create_backbone(cfg.backbone, weights, out_indices=tuple(cfg.extractor_indices[:cfg.selector_stages]),
                         **dict(cfg.backbone_args))
    return Staged(bb)


def load_extractor(extractor, state: dict) -> None:
    """Load an extractor's weights: every tensor it has must be there; tensors of
    segments it never runs (a checkpoint of the whole backbone) are ignored."""
    own = extractor.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"extractor weights miss {len(missing)} tensors, e.g. {missing[0]}")
    extractor.load_state_dict({k: torch.as_tensor(state[k]).to(own[k].dtype) for k in own})


def act() -> nn.Module:
    return nn.LeakyReLU(0.1)


class SFT(nn.Module):
    """Spatial feature transform: ``x * (1 + gamma(c)) + beta(c)``, per position."""

    def __init__(self, ch: int, cond: int):
        super().__init__()
        self.gamma = nn.Sequential(nn.Conv2d(cond, cond, 1), act(), nn.Conv2d(cond, ch, 1))
        self.beta = nn.Sequential(nn.Conv2d(cond, cond, 1), act(), nn.Conv2d(cond, ch, 1))

    def forward(self, x, c):
        return x * (1 + self.gamma(c)) + self.beta(c)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), act(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class Analysis(nn.Module):
    """g_a with q_a: (f / scale, m) -> y, 4x down (16x of the picture). The residual
    block works at 8x of the picture, not at the feature's own 4x, which would cost
    four times as much (sized for a CPU)."""

    def __init__(self, cfg: PromptIcmConfig):
        super().__init__()
        N, M, K = cfg.N, cfg.M, cfg.cond
        self.q_a = nn.ModuleList([nn.Sequential(nn.Conv2d(1, K, 3, padding=1), act(), nn.Conv2d(K, K, 3, padding=1), act()),
                                  nn.Sequential(nn.Conv2d(K, K, 3, stride=2, padding=1), act()),
                                  nn.Sequential(nn.Conv2d(K, K, 3, stride=2, padding=1), act())])
        self.inp = nn.Conv2d(cfg.C, N, 3, padding=1)
        self.sft = nn.ModuleList([SFT(N, K), SFT(N, K), SFT(M, K)])
        self.res = ResBlock(N)
        self.down = nn.ModuleList([conv(N, N), conv(N, M)])

    def forward(self, f, m):
        c0 = self.q_a[0](m)
        c1 = self.q_a[1](c0)
        c2 = self.q_a[2](c1)
        h = act()(self.sft[0](self.inp(f), c0))
        h = self.res(self.sft[1](self.down[0](h), c1))
        return self.sft[2](self.down[1](h), c2)


class Synthesis(nn.Module):
    """g_s with q_g and q_s: (y_hat, z_hat) -> f_hat / scale, 4x up."""

    def __init__(self, cfg: PromptIcmConfig):
        super().__init__()
        N, M, K = cfg.N, cfg.M, cfg.cond
        self.q_g = nn.Sequential(deconv(cfg.Nz, K), act(), deconv(K, K), act())  # z (1/64) -> w (1/16)
        self.q_s = nn.ModuleList([nn.Sequential(nn.Conv2d(K, K, 3, padding=1), act()),
                                  nn.Sequential(deconv(K, K, 3), act()), nn.Sequential(deconv(K, K, 3), act())])
        self.sft = nn.ModuleList([SFT(M, K), SFT(N, K), SFT(N, K)])
        self.up = nn.ModuleList([deconv(M, N), deconv(N, N)])
        self.res = ResBlock(N)
        self.out = nn.Conv2d(N, cfg.C, 3, padding=1)

    def forward(self, y_hat, z_hat):
        w = self.q_g(z_hat)
        c0 = self.q_s[0](w)
        c1 = self.q_s[1](c0)
        c2 = self.q_s[2](c1)
        h = self.res(self.sft[1](self.up[0](self.sft[0](y_hat, c0)), c1))
        h = act()(self.sft[2](self.up[1](h), c2))
        return self.out(h)


def make_feature_codec(cfg: PromptIcmConfig):
    """The trainable codec (imports compressai: training and export only)."""
    from icmcodec.coding.hyperprior_net import GainedHyperprior

    class FeatureCodec(GainedHyperprior):
        """Mean-scale hyperprior on features, SFT-conditioned (see the module docstring)."""

        def __init__(self, cfg: PromptIcmConfig):
            super().__init__(cfg)
            self.g_a, self.g_s = Analysis(cfg), Synthesis(cfg)
            with torch.no_grad():
                self.log2_gain.zero_()
            self.log2_gain.requires_grad_(False)

        def forward(self, f: torch.Tensor, m: torch.Tensor) -> dict:
            """``f``: features / scale (N x C x h x w); ``m``: N x 1 x h x w in [0, 1]."""
            y = self.g_a(f, m)
            z = self.h_a(y)
            z_hat, z_lik = self.entropy_bottleneck(z)
            mean, ls = self.h_s(z_hat)
            scale = torch.exp2(ls.clamp(-8, 12))
            if self.training:
                y_lik = self.gaussian_likelihood(y + torch.empty_like(y).uniform_(-0.5, 0.5), mean, scale)
                y_q = y + (torch.round(y - mean) + mean - y).detach()
            else:
                y_q = torch.round(y - mean) + mean
                y_lik = self.gaussian_likelihood(y_q, mean, scale)
            return {"f_hat": self.g_s(y_q, z_hat), "y_lik": y_lik, "z_lik": z_lik}

    return FeatureCodec(cfg)


def random_maps(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """n importance maps (n x 1 x h x w, values in [0, 1]), each one of the four kinds of
    the paper's supplementary E: uniform, a gradation between two values, a Gaussian-mixture
    density, blocks on a grid."""
    out = np.empty((n, 1, h, w), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        kind = rng.integers(4)
        if kind == 0:
            m = np.full((h, w), rng.random(), np.float32)
        elif kind == 1:
            a, b = rng.random(2)
            t = rng.random() * 2 * math.pi
            d = np.cos(t) * xx / max(w - 1, 1) + np.sin(t) * yy / max(h - 1, 1)
            d = (d - d.min()) / max(float(d.max() - d.min()), 1e-6)
            m = a + (b - a) * d
        elif kind == 2:
            m = np.zeros((h, w), np.float32)
            for _ in range(rng.integers(1, 6)):
                cy, cx = rng.random() * h, rng.random() * w
                s = (0.05 + 0.3 * rng.random()) * max(h, w)
                m += rng.random() * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            lo, hi = np.sort(rng.random(2))
            m = lo + (hi - lo) * (m - m.min()) / max(float(m.max() - m.min()), 1e-6)
        else:
            gy, gx = rng.integers(2, 9, size=2)
            cells = rng.random((gy, gx)).astype(np.float32)
            m = cells[np.minimum((yy * gy / h).astype(int), gy - 1), np.minimum((xx * gx / w).astype(int), gx - 1)]
        out[i, 0] = m
    return out


class InformationSelector(nn.Module):
    """Stage 1..k features -> importance map at stage 1's resolution (sigmoid).

    ``contrast``: the selector also learns how sharp its map should be at each quality,
    ``gamma(q) = softplus(a + b * q / 4)``, applied as ``m ** gamma`` before the map is
    made relative (:func:`~.codec.relative`). Why: the paper trains one selector per rate
    point; one selector for every quality needs a way to flatten its map where contrast
    costs more bits than it saves (a low quality spends little everywhere, and rate is
    convex in lambda there, so a contrasty map of the same mean spends *more*). gamma -> 0
    is the constant map, so such a selector can always fall back to uniform allocation.
    Starts at gamma = 1 everywhere (the plain map)."""

    def __init__(self, channels: list[int], width: int = 32, contrast: bool = False):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.fuse = nn.Sequential(nn.Conv2d(width * len(channels), width, 1), nn.GELU(),
                                  nn.Conv2d(width, width, 3, padding=1, groups=width // 4 or 1), nn.GELU(),
                                  nn.Conv2d(width, 1, 1))
        self.contrast = nn.Parameter(torch.tensor([math.log(math.e - 1), 0.0])) if contrast else None

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        h = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if i else p(f)
             for i, (p, f) in enumerate(zip(self.proj, feats))]
        return torch.sigmoid(self.fuse(torch.cat(h, 1)))

    def gamma(self, quality) -> torch.Tensor | None:
        """The map's exponent at ``quality`` (a number or an N x 1 x 1 x 1 tensor); None
        for a selector without learned contrast."""
        if self.contrast is None:
            return None
        q = torch.as_tensor(quality, dtype=self.contrast.dtype, device=self.contrast.device)
        return F.softplus(self.contrast[0] + self.contrast[1] * q / 4)


class ConvPrompt(nn.Module):
    """A task-adaptive prompt for a convolutional stage's input: ``x + p + B(dw(A(x)))``,
    with ``B`` and ``p`` zero-initialised (the frozen network is unchanged at the start)."""

    def __init__(self, ch: int, ratio: int = 4):
        super().__init__()
        r = max(4, ch // ratio)
        self.prompt = nn.Parameter(torch.zeros(1, ch, 1, 1))
        self.down = nn.Conv2d(ch, r, 1)
        self.dw = nn.Conv2d(r, r, 3, padding=1, groups=r)
        self.up = nn.Conv2d(r, ch, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.prompt + self.up(F.gelu(self.dw(self.down(x))))


class TaskDecoder(nn.Module):
    """The decoder side of a task: prompts into the task network's frozen later stages,
    and its head (a trainable copy), on the decoded feature. ``finetune``: the stages
    train too (the paper's "w/o TAP" comparison: full tuning of the decoder side).

    ``tasknet``: a :class:`icmcodec.tasks.nets.TaskNet` whose backbone emits the coded
    feature's kind at 4x (the extractor's architecture). Its backbone stays frozen."""

    def __init__(self, tasknet, prompts: bool = True, ratio: int = 4, finetune: bool = False):
        super().__init__()
        import copy

        from icmcodec.methods.prompt_icm.staged import Staged

        # fine-tuned (the ablation "instead of prompts"), the stages are this decoder's own copy
        self.finetune = finetune
        self.staged = Staged(copy.deepcopy(tasknet.backbone) if finetune else tasknet.backbone)
        for p in self.staged.parameters():
            p.requires_grad_(finetune)
        self.head = copy.deepcopy(tasknet.head)
        self.use_prompts = prompts
        self.prompts = nn.ModuleDict()
        if prompts:
            c0 = self.staged.channels[self.staged.first]
            self.prompts[str(self.staged.cut - 1)] = ConvPrompt(c0, ratio)
            probe = torch.zeros(1, c0, 8, 8)
            for i, c in self.staged.later_inputs(probe)[1:]:
                self.prompts[str(i)] = ConvPrompt(c, ratio)

    def _before(self, i, x):
        p = self.prompts[str(i)] if str(i) in self.prompts else None
        return p(x) if p is not None else x

    def forward(self, f_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decoded feature (N x C x h x w, the extractor's units) -> logits; dense ones at
        ``size`` (the coded picture's size)."""
        f = self._before(self.staged.cut - 1, f_hat)
        feats = self.staged.rest(f, before=lambda i, x: x if i == self.staged.cut else self._before(i, x))
        # the decoder has features, not the picture: a head with a full-resolution detail
        # branch (boundary, saliency) sees a mid-grey picture (0 in the network's input units),
        # and the set's copy of the head learns to do without it
        return self.head(feats, f.new_zeros(()).expand(f.shape[0], 3, *size))

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """What a task's adapter stores: the prompts and the head (and the stages only
        when they were fine-tuned)."""
        return {k: v for k, v in self.state_dict().items() if self.finetune or not k.startswith("staged.")}
