"""The hyperprior's integer twin: its hyper synthesis as a :class:`~icmcodec.exact.Plan`.

``h_s`` is three 3x3 convolutions with a 2x pixel shuffle and a ReLU after the first
two; :func:`quantize_hyper_synthesis` converts the trained float ``h_s`` once at
export, and the float network is never used for coding again.
"""
from __future__ import annotations

import numpy as np
import torch

from icmcodec.exact import Plan, quantize_conv

HS_PLAN = Plan((("conv", 0), ("shuffle", 2), ("relu",), ("conv", 1), ("shuffle", 2), ("relu",), ("conv", 2)))


def quantize_hyper_synthesis(h_s) -> dict[str, np.ndarray]:
    """Trained float ``HyperSynthesis`` -> integer weights/biases (checked bounds)."""
    out = {}
    for i, c in enumerate(h_s.convs):
        for leaf, v in quantize_conv(c, f"h_s conv {i}").items():
            out[f"{i}.{leaf}"] = v
    return out


class ExactHyperSynthesis:
    """Integer twin of ``HyperSynthesis``: z (fixed point) -> (mean, log2 scale)."""

    plan = HS_PLAN

    def __init__(self, params: dict[str, np.ndarray], device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.weights = self.plan.load(params, self.device)

    def __call__(self, z_fp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_fp``: (Nz, h, w) fixed-point ints -> (mean_fp, log2_scale_fp), each (M, 4h, 4w)."""
        mean, log2_scale = self.plan.run(self.weights, z_fp.to(self.device)).chunk(2, dim=0)
        return mean, log2_scale
