"""Fixed-point building blocks with proven bounds (see :mod:`icmcodec.exact`).

Tensors hold integers in float64 (activations with ``ACT_FRAC`` fractional bits).
Every block returns exact integers, clamped to ``+-ACT_LIMIT``, so blocks compose
without re-proving anything: a :class:`Plan` is a list of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ACT_FRAC = 10
W_FRAC = 14
ACT_LIMIT = 1 << 22
W_LIMIT = 1 << 16
B_LIMIT = 1 << 51
MAX_FAN_IN = 1 << 13


def _clamp(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(-ACT_LIMIT, ACT_LIMIT)


def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k x k convolution, stride 1, zero padding k // 2, then ``floor(/2**W_FRAC)``.

    ``x`` (C, H, W) fixed-point, ``w`` (O, C, k, k) and ``b`` (O,) integers. It is
    k*k shifted matrix products summed: every term is an exact integer, so the order
    of the sums does not matter (no cuDNN: its Winograd/FFT paths are not exact)."""
    c, h, wd = x.shape
    k = w.shape[-1]
    r = k // 2
    acc = b[:, None].expand(-1, h * wd).clone()
    if k == 1:
        acc += w[:, :, 0, 0] @ x.reshape(c, h * wd)
    else:
        xp = F.pad(x, (r, r, r, r))
        for dy in range(k):
            for dx in range(k):
                acc += w[:, :, dy, dx] @ xp[:, dy:dy + h, dx:dx + wd].reshape(c, h * wd)
    return _clamp(torch.floor(acc.reshape(-1, h, wd) / float(1 << W_FRAC)))


def relu(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=0)


def leaky_relu(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Negative values times ``2**-shift``, floored (slope 1/2**shift, exact)."""
    return torch.where(x >= 0, x, torch.floor(x / float(1 << shift)))


def pixel_shuffle(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.pixel_shuffle(x[None], factor)[0]


def concat(*xs: torch.Tensor) -> torch.Tensor:
    return torch.cat(xs, 0)


def quantize_conv(module, name: str = "conv") -> dict[str, np.ndarray]:
    """A trained float ``nn.Conv2d`` (stride 1, padding k // 2, odd k) -> integer
    ``weight``/``bias``, with the bounds checked (export refuses what would be inexact)."""
    k = module.kernel_size[0]
    if module.stride != (1, 1) or module.padding != (k // 2, k // 2) or k % 2 == 0 or module.kernel_size[1] != k:
        raise ValueError(f"{name}: only stride-1, same-padded, odd square kernels have an exact twin")
    w = np.round(module.weight.detach().double().cpu().numpy() * (1 << W_FRAC)).astype(np.int64)
    bias = module.bias.detach().double().cpu().numpy() if module.bias is not None else np.zeros(w.shape[0])
    b = np.round(bias * (1 << (W_FRAC + ACT_FRAC))).astype(np.int64)
    if np.abs(w).max() > W_LIMIT:
        raise ValueError(f"{name}: weight {np.abs(w).max() / (1 << W_FRAC):.2f} too large for the exact path")
    if np.abs(b).max() > B_LIMIT or w[0].size > MAX_FAN_IN:
        raise ValueError(f"{name}: bias or fan-in beyond the exact path's bounds")
    return {"weight": w, "bias": b}


@dataclass(frozen=True)
class Plan:
    """A sequential integer network: ``ops`` is a tuple of steps, each one of
    ``("conv", i)`` (the i-th weight set), ``("shuffle", f)``, ``("relu",)`` or
    ``("leaky", shift)``. Weight set ``i`` is ``params[f"{i}.weight"]`` and
    ``params[f"{i}.bias"]`` (the naming every shipped model file uses)."""

    ops: tuple

    def convs(self) -> list[int]:
        return [op[1] for op in self.ops if op[0] == "conv"]

    def load(self, params: dict[str, np.ndarray], device) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The weight sets as float64 tensors on ``device``, bounds checked again
        (a model file is input too)."""
        out = {}
        for i in self.convs():
            w = torch.from_numpy(np.asarray(params[f"{i}.weight"], dtype=np.float64)).to(device)
            b = torch.from_numpy(np.asarray(params[f"{i}.bias"], dtype=np.float64)).to(device)
            if w.dim() != 4 or w.abs().max() > W_LIMIT or b.abs().max() > B_LIMIT or w[0].numel() > MAX_FAN_IN:
                raise ValueError("exact-path parameters out of bounds")
            out[i] = (w, b)
        return out

    def run(self, weights: dict, x: torch.Tensor) -> torch.Tensor:
        x = _clamp(x.to(torch.float64).clone())
        for op in self.ops:
            if op[0] == "conv":
                x = conv(x, *weights[op[1]])
            elif op[0] == "shuffle":
                x = pixel_shuffle(x, op[1])
            elif op[0] == "relu":
                x = relu(x)
            elif op[0] == "leaky":
                x = leaky_relu(x, op[1])
            else:
                raise ValueError(f"unknown exact op {op[0]!r}")
        return x
