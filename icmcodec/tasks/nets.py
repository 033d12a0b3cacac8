"""Task networks: the shared backbone plus one small head per task.

* ``DenseHead``: an all-MLP decoder in the manner of SegFormer (Xie et al. 2021):
  each stage projected to ``dim`` channels, upsampled to the stage-1 grid (4x down),
  concatenated and fused. With ``detail=True`` a two-layer full-resolution convolution
  on the input picture is fused in before the last layer, which boundaries need (a 4x
  down-sampled map cannot place a one-pixel edge).
* ``ClsHead``: global average pooling of the last stage, LayerNorm, linear.

``TaskNet`` takes RGB in [0, 1] (N x 3 x H x W, any H and W) and returns logits at
the input resolution (dense) or per image (global). The input normalisation of the
backbone's pre-training (``mean``/``std``, recorded in the task network's config) lives
inside the network, so callers never have to know it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icmcodec.tasks.backbone import create_backbone, input_stats


class DenseHead(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, dim: int = 96, detail: bool = False):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(in_channels), dim, 1, bias=False), nn.BatchNorm2d(dim),
                                  nn.ReLU(inplace=True))
        self.detail = None
        if detail:
            self.detail = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True),
                                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True))
            self.reduce = nn.Conv2d(dim, 16, 1)
            self.out = nn.Conv2d(32, out_channels, 3, padding=1)
        else:
            self.out = nn.Conv2d(dim, out_channels, 1)

    def forward(self, feats: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        size = feats[0].shape[-2:]
        up = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if i else p(f)
              for i, (p, f) in enumerate(zip(self.proj, feats))]
        h = self.fuse(torch.cat(up, 1))
        if self.detail is None:
            return F.interpolate(self.out(h), size=x.shape[-2:], mode="bilinear", align_corners=False)
        h = F.interpolate(self.reduce(h), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(torch.cat([h, self.detail(x)], 1))


class ClsHead(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, drop: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(in_channels[-1])
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(in_channels[-1], out_channels)

    def forward(self, feats: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.norm(feats[-1].mean((2, 3)))))


class TaskNet(nn.Module):
    def __init__(self, kind: str, out_channels: int, backbone: str = "icm_pvt_nano", backbone_weights=None,
                 head: dict | None = None, drop_path_rate: float = 0.0, backbone_args: dict | None = None,
                 mean=None, std=None):
        super().__init__()
        self.backbone = create_backbone(backbone, backbone_weights, drop_path_rate=drop_path_rate,
                                        **(backbone_args or {}))
        chans = self.backbone.feature_info.channels()
        head = dict(head or {})
        self.head = DenseHead(chans, out_channels, **head) if kind == "dense" else ClsHead(chans, out_channels, **head)
        dm, ds = input_stats(backbone)
        self.register_buffer("mean", torch.tensor(mean or dm).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or ds).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = (x - self.mean) / self.std
        return self.head(self.backbone(xn), xn)
