"""A timm ``features_only`` backbone cut into segments, so it can stop and resume mid-way.

Prompt-ICM codes a backbone's *stage-1 features* (4x down-sampling): the encoder runs the
backbone up to them (and a little further, for the information selector), the decoder
resumes from the decoded features and runs the later stages. timm's feature models run
start to end in one call, so :class:`Staged` re-reads them as a list of segments, each a
callable with a flag "emits a feature map":

* ``EfficientNetFeatures`` (the EfficientNet-Lite backbones): the stem (conv + BN/act),
  then one segment per block stage;
* ``FeatureListNet`` (PVT, ConvNeXt, ...): its children in order, emitting where timm's
  ``return_layers`` says.

Running every segment in order gives exactly the model's own ``forward``; a test checks
it. ``cut`` is the index of the first emitted feature at 4x down-sampling.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class Staged(nn.Module):
    """Segments of a timm feature backbone with the features they emit."""

    def __init__(self, backbone: nn.Module, reduction: int = 4):
        super().__init__()
        self.backbone = backbone
        segs: list[tuple[Callable, bool]] = []
        if hasattr(backbone, "blocks") and hasattr(backbone, "_stage_out_idx"):
            out = set(backbone._stage_out_idx)
            segs.append((nn.Sequential(backbone.conv_stem, backbone.bn1), 0 in out))
            segs += [(b, i + 1 in out) for i, b in enumerate(backbone.blocks)]
        elif hasattr(backbone, "return_layers"):
            segs = [(m, name in backbone.return_layers) for name, m in backbone.items()]
        else:
            raise ValueError(f"{type(backbone).__name__}: not a timm features_only backbone this code can cut")
        # segments after the last emitted feature are never run: drop them (and their weights)
        last = max(i for i, (_, e) in enumerate(segs) if e)
        if hasattr(backbone, "blocks") and last < len(segs) - 1:
            backbone.blocks = backbone.blocks[:last]
        segs = segs[:last + 1]
        self._segs = segs
        reductions = backbone.feature_info.reduction()
        if reduction not in reductions:
            raise ValueError(f"the backbone emits no feature at {reduction}x down-sampling (it has {reductions})")
        self.emitted = [i for i, (_, e) in enumerate(segs) if e]  # segment index of each emitted feature
        self.first = reductions.index(reduction)  # which emitted feature is the coded one
        self.cut = self.emitted[self.first] + 1  # segments [0, cut) make the coded feature
        self.channels = backbone.feature_info.channels()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.run(x, 0, len(self._segs))

    def run(self, x: torch.Tensor, start: int, stop: int, before: Callable | None = None) -> list[torch.Tensor]:
        """Segments ``start..stop-1`` on ``x``; the features they emit. ``before(i, x)``
        may replace the input of segment ``i`` (task-adaptive prompts)."""
        feats = []
        for i in range(start, stop):
            if before is not None:
                x = before(i, x)
            seg, emits = self._segs[i]
            x = seg(x)
            if emits:
                feats.append(x)
        return feats

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The picture (normalised) -> the coded feature (4x down-sampling)."""
        return self.run(x, 0, self.cut)[-1]

    def upto(self, x: torch.Tensor, count: int) -> list[torch.Tensor]:
        """The coded feature and the next ``count - 1`` emitted ones (the selector's input)."""
        stop = self.emitted[min(self.first + count, len(self.emitted)) - 1] + 1
        return self.run(x, 0, stop)[self.first:]

    def rest(self, f: torch.Tensor, before: Callable | None = None) -> list[torch.Tensor]:
        """Resume from the coded feature: [f, later features...]."""
        return [f] + self.run(f, self.cut, len(self._segs), before)

    def later_inputs(self, f: torch.Tensor) -> list[tuple[int, int]]:
        """(segment index, input channels) of every segment after the cut."""
        seen = []

        def rec(i, x):
            seen.append((i, x.shape[1]))
            return x

        with torch.no_grad():
            self.run(f, self.cut, len(self._segs), rec)
        return seen
