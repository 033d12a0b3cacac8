"""DoRA-ICM's low-complexity decoder: the decoded latent (1/16) -> the task's output.

Section 2.4 of the paper, sized for a CPU:

* 3 stages at 1/16, 1/8 and 1/4 of the picture, each followed by a 2x bicubic
  up-sampling (and a 1x1 projection to the next stage's width), so the stages reach
  8x; the final projection to the task's channels runs at 1/2 and the last 2x is an
  interpolation after it;
* low-complexity attention: queries from a depth-wise 3x3 stride-2 convolution, keys
  and values from depth-wise convolutions of stride ``2**(s+1)`` (stage s = 0, 1, 2),
  so every stage attends to the same 1/32 key grid; the attention output (at half the
  stage's resolution) is up-sampled back bicubically;
* cross-scale attention: the scores of stage s add ``alpha_s`` times those of stage
  s - 1, up-sampled 2x over the query grid (the key grids agree, see above);
* EVA-02-style blocks: 2D rotary position embedding on queries and keys (positions in
  picture units, so the strided grids line up), a SwiGLU feed-forward network, and
  sub-LN (a LayerNorm before the attention's and the FFN's output projections).

The coarse prediction the encoder sent (the latent's last ``classes`` channels) is
added to the output up-sampled, so the decoder learns a refinement.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def rope_2d(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` (B, heads, N, d) at positions (ys, xs) (N each): the
    first half of each head's channels rotate with y, the second with x."""
    d = x.shape[-1]
    q = d // 4  # frequency pairs per axis
    freqs = 1.0 / (100.0 ** (torch.arange(q, device=x.device, dtype=torch.float32) / q))
    out = []
    for part, pos in ((x[..., : d // 2], ys), (x[..., d // 2:], xs)):
        ang = pos.float()[:, None] * freqs[None]  # N x q
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        a, b = part[..., 0::2], part[..., 1::2]
        out.append(torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2))
    return torch.cat(out, -1)


def _grid(h: int, w: int, stride: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of an h x w grid whose cells are ``stride`` picture units wide."""
    ys = (torch.arange(h, device=device) + 0.5) * stride
    xs = (torch.arange(w, device=device) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return yy.flatten() / 16.0, xx.flatten() / 16.0


class LowCostAttention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_stride: int):
        super().__init__()
        self.heads, self.kv_stride = heads, kv_stride
        self.q_dw = nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim)
        self.kv_dw = nn.Conv2d(dim, dim, kv_stride, stride=kv_stride, groups=dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.sub_ln = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, unit: float, prev_scores: torch.Tensor | None, alpha):
        """``x``: B x C x H x W at ``unit`` picture pixels per position. Returns the
        output (same shape) and this stage's scores (B, heads, Nq, Nk)."""
        B, C, H, W = x.shape
        hd = C // self.heads
        qm = self.q_dw(x)
        kvm = self.kv_dw(x)
        (hq, wq), (hk, wk) = qm.shape[2:], kvm.shape[2:]
        q = self.q(qm.flatten(2).transpose(1, 2)).view(B, -1, self.heads, hd).transpose(1, 2)
        kv = kvm.flatten(2).transpose(1, 2)
        k = self.k(kv).view(B, -1, self.heads, hd).transpose(1, 2)
        v = self.v(kv).view(B, -1, self.heads, hd).transpose(1, 2)
        q = rope_2d(q, *_grid(hq, wq, 2 * unit, x.device))
        k = rope_2d(k, *_grid(hk, wk, self.kv_stride * unit, x.device))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if prev_scores is not None:
            hp, wp = hq // 2, wq // 2
            if prev_scores.shape[2] == hp * wp and prev_scores.shape[3] == scores.shape[3]:
                p = prev_scores.transpose(2, 3).reshape(B, self.heads * scores.shape[3], hp, wp)
                p = F.interpolate(p, size=(hq, wq), mode="nearest")
                scores = scores + alpha * p.reshape(B, self.heads, scores.shape[3], hq * wq).transpose(2, 3)
        out = scores.softmax(-1) @ v  # B, heads, Nq, hd
        out = out.transpose(1, 2).reshape(B, hq * wq, C)
        out = self.proj(self.sub_ln(out)).transpose(1, 2).reshape(B, C, hq, wq)
        return _up(out, (H, W)), scores


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.sub_ln = nn.LayerNorm(hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, -1)
        return self.w3(self.sub_ln(F.silu(a) * b))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, kv_stride: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LowCostAttention(dim, heads, kv_stride)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwiGLU(dim, int(dim * mlp_ratio))

    def forward(self, x, unit, prev_scores, alpha):
        n = self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        a, scores = self.attn(n, unit, prev_scores, alpha)
        x = x + a
        t = x.permute(0, 2, 3, 1)
        x = (t + self.mlp(self.norm2(t))).permute(0, 3, 1, 2)
        return x, scores


class LowComplexityDecoder(nn.Module):
    """ŷ (B x M x h x w at 1/16) -> task logits at the picture's size."""

    def __init__(self, M: int, classes: int, dims=(96, 64, 32), heads: int = 2, depth: int = 1):
        super().__init__()
        self.classes = classes
        self.stem = nn.Conv2d(M, dims[0], 1)
        self.stages = nn.ModuleList()
        self.alpha = nn.Parameter(torch.zeros(len(dims)))
        for s, d in enumerate(dims):
            self.stages.append(nn.ModuleList([Block(d, heads, 2 ** (s + 1)) for _ in range(depth)]))
        self.link = nn.ModuleList([nn.Conv2d(dims[s], dims[s + 1], 1) for s in range(len(dims) - 1)])
        self.head = nn.Conv2d(dims[-1], classes, 1)

    def forward(self, y_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.stem(y_hat)
        unit = 16.0
        prev = None
        for s, blocks in enumerate(self.stages):
            for blk in blocks:
                x, prev = blk(x, unit, prev, self.alpha[s])
            x = _up(x, (x.shape[2] * 2, x.shape[3] * 2))
            unit /= 2
            if s < len(self.link):
                x = self.link[s](x)
        logits = self.head(x)  # 1/2
        coarse = y_hat[:, -self.classes:]
        logits = logits + _up(coarse, logits.shape[2:])
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
