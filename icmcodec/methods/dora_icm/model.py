"""DoRA-ICM's trainable network (Wang et al., "Low-Rank Adaptation of Pre-trained Vision
Backbones for Energy-Efficient Image Coding for Machines"; section 2).

encoder: the frozen pre-trained backbone (EfficientNet-Lite0 from the registry package,
features at 1/16) with per-task DoRA adapters on its pointwise convolutions
(:mod:`.dora`); the task preliminary decoder (two Conv-BN-GELU units: task features,
then a coarse prediction through a 1x1 projection), supervised with the task loss
after bicubic up-sampling; features and prediction concatenated are the latent ``y``.

entropy model: the shared hyperprior + checkerboard context of :mod:`icmcodec.coding`
(:class:`~icmcodec.coding.context_net.GainedContext` with no picture transforms), every
entropy parameter in the exact integer path at coding time, variable rate by gains.

decoder: :class:`~.decoder.LowComplexityDecoder`, the task's output itself.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from icmcodec.coding.context_config import ContextConfig
from icmcodec.methods.dora_icm import dora
from icmcodec.methods.dora_icm.decoder import LowComplexityDecoder


@dataclass(frozen=True)
class DoraIcmConfig:
    task: str = "semseg"
    classes: int = 11  # the task's output channels
    backbone: str = "tf_efficientnet_lite0"
    feature_index: int = 3  # the backbone's feature map at 1/16
    backbone_channels: int = 112
    targets: str = "pointwise"  # what DoRA adapts: "pointwise" (conv nets) or "qkv" (ViTs)
    adapt_from: int = 3  # a conv net's first adapted block group (3, 4: the groups at 1/16)
    rank: int = 8
    dora: bool = True  # False: LoRA (no magnitude vector), the ablation
    alpha: float = 8.0
    feat: int = 117  # task-feature channels; latent M = feat + classes
    Nz: int = 64
    Nh: int = 96
    hidden: int = 64  # context network width
    slices: tuple = ()  # channel slices of y (default: the prediction, then the features)
    levels: int = 5
    lambdas: tuple = (0.25, 0.5, 1.0, 2.0, 4.0)  # task-loss weights, one per quality level
    dims: tuple = (96, 64, 32)
    heads: int = 2
    depth: int = 1
    backbone_args: dict = field(default_factory=dict)  # a small backbone's timm arguments (tests)

    @property
    def M(self) -> int:
        return self.feat + self.classes

    def entropy_config(self) -> ContextConfig:
        slices = tuple(self.slices) or (self.classes, self.feat)
        return ContextConfig(N=self.M, M=self.M, Nz=self.Nz, Nh=self.Nh, levels=self.levels,
                             lambdas=tuple(self.lambdas), slices=slices, hidden=self.hidden)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("slices", "lambdas", "dims"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DoraIcmConfig":
        d = dict(d)
        for k in ("slices", "lambdas", "dims"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def unit(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class PreliminaryDecoder(nn.Module):
    """Two Conv-BN-GELU units: task features, then (through a 1x1 projection) a coarse
    prediction; ``y`` is their concatenation, the prediction last."""

    def __init__(self, cin: int, feat: int, classes: int):
        super().__init__()
        self.unit1 = unit(cin, feat)
        self.unit2 = unit(feat, feat)
        self.pred = nn.Conv2d(feat, classes, 1)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.unit1(f)
        p = self.pred(self.unit2(t))
        return torch.cat([t, p], 1), p


def build_backbone(cfg: DoraIcmConfig, weights=None) -> nn.Module:
    """The frozen backbone up to its 1/16 features (adapters not yet injected)."""
    from icmcodec.tasks.backbone import create_backbone

    net = create_backbone(cfg.backbone, weights=weights, out_indices=(cfg.feature_index,), **cfg.backbone_args)
    # timm's EfficientNet features keep (and run) every block group; drop those past the
    # one that gives the 1/16 features (its feature at stage k is after blocks[k - 1])
    stage_out = getattr(net, "_stage_out_idx", None)
    if stage_out and hasattr(net, "blocks"):
        net.blocks = net.blocks[:max(stage_out)]
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class Encoder(nn.Module):
    """Backbone (+ DoRA) and the preliminary decoder: picture in [0, 1] -> (y, prediction)."""

    def __init__(self, cfg: DoraIcmConfig, backbone: nn.Module, mean, std):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.prelim = PreliminaryDecoder(cfg.backbone_channels, cfg.feat, cfg.classes)

    def adapt(self) -> None:
        """Inject fresh DoRA adapters (training)."""
        names = dora.targets(self.backbone, self.cfg.targets, self.cfg.adapt_from)
        dora.inject(self.backbone, names, self.cfg.rank, self.cfg.alpha, self.cfg.dora)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen batch-norm statistics, always
        return self

    def forward(self, x: torch.Tensor):
        f = self.backbone((x - self.mean) / self.std)[-1]
        return self.prelim(f)


def make_entropy(cfg: DoraIcmConfig) -> nn.Module:
    """The shared gained hyperprior + checkerboard/channel-slice context, on y directly
    (no picture transforms: the encoder above is the analysis, the decoder the synthesis)."""
    from icmcodec.coding.context_net import GainedContext

    ent = GainedContext(cfg.entropy_config())
    ent.g_a, ent.g_s = nn.Identity(), nn.Identity()
    return ent


class DoraIcm(nn.Module):
    """The whole trainable method: encoder, entropy model, decoder."""

    def __init__(self, cfg: DoraIcmConfig, backbone: nn.Module, mean, std):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg, backbone, mean, std)
        self.entropy = make_entropy(cfg)
        self.decoder = LowComplexityDecoder(cfg.M, cfg.classes, cfg.dims, cfg.heads, cfg.depth)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> dict:
        y, pred = self.encoder(x)
        # the entropy model in float32 under any autocast: likelihoods of small
        # probabilities and rounding are what bf16 gets wrong
        with torch.autocast(x.device.type, enabled=False):
            out = self.entropy.entropy(y.float(), levels)
        out["logits"] = self.decoder(out["y_hat"], x.shape[2:])
        out["prelim"] = F.interpolate(pred, size=x.shape[2:], mode="bicubic", align_corners=False)
        return out

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a per-task file holds: adapters, preliminary decoder, entropy model,
        decoder (never the frozen backbone)."""
        sd = {f"encoder.backbone.{k}": v for k, v in dora.adapter_state(self.encoder.backbone).items()}
        sd.update({f"encoder.prelim.{k}": v for k, v in self.encoder.prelim.state_dict().items()})
        sd.update({f"entropy.{k}": v for k, v in self.entropy.state_dict().items()})
        sd.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return sd
