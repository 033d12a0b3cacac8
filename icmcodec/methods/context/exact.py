"""The context model's integer twin: per slice, three :class:`~icmcodec.exact.Plan`s.

``cc[k]`` (3x3 conv, ReLU), ``sc[k]`` (5x5 conv) and ``ep[k]`` (1x1 conv, ReLU, 1x1
conv), quantized once at export and stored as ``exact.ctx.<k>.<net>.<i>.{weight,bias}``.
:class:`ExactContext` runs them on fixed-point integers: the decoded latents enter
un-gained (``gain_shift`` by the negated log2 gains, an exact integer rule), so every
entropy parameter of every slice and pass is the same integer on every machine.
"""
from __future__ import annotations

import numpy as np
import torch

from icmcodec.exact import ACT_LIMIT, Plan, quantize_conv

CC = Plan((("conv", 0), ("relu",)))
SC = Plan((("conv", 0),))
EP = Plan((("conv", 0), ("relu",), ("conv", 1)))


def quantize_context(ctx) -> dict[str, np.ndarray]:
    """Trained float ``ContextNets`` -> integer parameters (bounds checked)."""
    out = {}
    for k in range(len(ctx.ep)):
        convs = {"sc": [ctx.sc[k]], "ep": [ctx.ep[k][0], ctx.ep[k][2]]}
        if k:
            convs["cc"] = [ctx.cc[k]]
        for net, mods in convs.items():
            for i, m in enumerate(mods):
                for leaf, v in quantize_conv(m, f"context slice {k} {net} conv {i}").items():
                    out[f"{k}.{net}.{i}.{leaf}"] = v
    return out


def dequantize_into(ctx, params: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`quantize_context` (a warm start from a shipped model)."""
    from icmcodec.exact import ACT_FRAC, W_FRAC

    for key, v in params.items():
        k, net, i, leaf = key.split(".")
        k, i = int(k), int(i)
        mod = {"cc": lambda: ctx.cc[k], "sc": lambda: ctx.sc[k], "ep": lambda: ctx.ep[k][2 * i]}[net]()
        frac = W_FRAC if leaf == "weight" else W_FRAC + ACT_FRAC
        with torch.no_grad():
            getattr(mod, leaf).copy_(torch.from_numpy(np.asarray(v, np.float64) / (1 << frac)).float())


class ExactContext:
    """Integer context and parameter networks of every slice."""

    def __init__(self, params: dict[str, np.ndarray], slices: list[tuple[int, int]], hidden: int, device="cpu"):
        self.device = torch.device(device)
        self.hidden = hidden
        self.nets = []
        for k in range(len(slices)):
            def sub(net):
                prefix = f"{k}.{net}."
                return {key[len(prefix):]: v for key, v in params.items() if key.startswith(prefix)}
            self.nets.append({
                "cc": CC.load(sub("cc"), self.device) if k else None,
                "sc": SC.load(sub("sc"), self.device),
                "ep": EP.load(sub("ep"), self.device),
            })

    def channel(self, k: int, y_prev_fp: np.ndarray | None, shape) -> torch.Tensor:
        if k == 0:
            return torch.zeros((self.hidden,) + tuple(shape), dtype=torch.float64, device=self.device)
        return CC.run(self.nets[k]["cc"], torch.from_numpy(y_prev_fp).to(self.device))

    def spatial(self, k: int, anchors_fp: np.ndarray) -> torch.Tensor:
        return SC.run(self.nets[k]["sc"], torch.from_numpy(anchors_fp).to(self.device))

    def params(self, k: int, mean_h: torch.Tensor, ls_h: torch.Tensor, cc: torch.Tensor, sc: torch.Tensor):
        """(mean, log2 scale), un-gained fixed point: the hyper's plus the corrections."""
        d = EP.run(self.nets[k]["ep"], torch.cat([mean_h, ls_h, cc, sc], 0))
        dm, dl = d.chunk(2, 0)
        return (mean_h + dm).clamp_(-ACT_LIMIT, ACT_LIMIT), (ls_h + dl).clamp_(-ACT_LIMIT, ACT_LIMIT)
