"""Swin-transformer layers that take prompt tokens (TransTIC; MPA's paths reuse them).

A :class:`SwinLayer` is window attention (shifted by half a window in every second
layer, Liu et al. 2021) and an MLP, each residual, on an N x C x H x W feature map.
Prompts are extra *keys and values* of the attention only (TransTIC, Chen et al. 2023,
eq. 2): the picture's tokens are the queries, every window's softmax runs over its own
tokens and its prompts, and prompt tokens are dropped after attention, so a layer's
output has exactly its input's tokens. Two kinds:

* ``instance`` prompts: a feature map at half the layer's resolution (a quarter of the
  tokens), partitioned into windows of half the size exactly as the picture is, so
  each window sees the prompts of its own place (16 prompts for an 8 x 8 window). In
  a shifted layer the prompt map is rolled by half the shift and masked like the
  picture, so a window never sees prompts from across the wrap-around.
* ``task`` prompts: a P x C tensor shared by every window of the layer (the decoder's
  task-specific prompts; the number of windows depends on the picture size).

:class:`SwinBlock` (an "STB") is ``depth`` layers and a 1x1 output projection around
a residual: ``x + proj(layers(x))``. With ``zero_init`` the projection starts at zero,
so a block inserted into a trained convolutional codec leaves it exactly as it was
until training moves it (the hybrid route of the TransTIC issue).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MASKED = -1e4  # added to attention logits across a shifted window's wrap-around


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """B x H x W x C (H, W multiples of ``w``) -> (B * windows) x (w * w) x C."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def window_merge(win: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    b = win.shape[0] // ((h // w) * (wd // w))
    x = win.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


def region_ids(h: int, w: int, window: int, shift: int, device=None) -> torch.Tensor:
    """Per token of an h x w map rolled by ``shift``: which of the 3 x 3 regions of the
    un-rolled map it came from (equal ids = neighbours in the picture). Windows x tokens."""
    ids = torch.zeros(h, w, dtype=torch.long, device=device)
    if shift:
        spans = ((0, -window), (-window, -shift), (-shift, None))
        k = 0
        for ys in spans:
            for xs in spans:
                ids[slice(*ys), slice(*xs)] = k
                k += 1
    return window_partition(ids[None, :, :, None], window)[..., 0]


def shift_mask(q_ids: torch.Tensor, k_ids: torch.Tensor) -> torch.Tensor:
    """Windows x Nq x Nk additive mask: 0 where query and key share a region."""
    return torch.where(q_ids[:, :, None] == k_ids[:, None, :], 0.0, MASKED)


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows, relative position bias, optional prompts."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.dim, self.heads, self.window = dim, heads, window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)
        yy, xx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        pos = torch.stack([yy.flatten(), xx.flatten()])  # 2 x N
        rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # B x N x C -> B x heads x N x d
        return t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    # at coding time the windows of one picture are attended a group at a time: whole,
    # a tile's attention logits alone take heads x 64 x 80 floats per window (95 MB for
    # a 1088-pixel tile's 1/4 scale), several times over
    WINDOW_GROUP = 256

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, prompts: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B * windows) x N x C. ``mask``: windows x N x N. ``prompts``:
        (B * windows) x P x C (instance) or P x C (task, shared). ``prompt_mask``:
        windows x N x P."""
        bn, g = x.shape[0], self.WINDOW_GROUP
        one_picture = all(t is None or t.dim() == 2 or t.shape[0] == bn for t in (mask, prompts, prompt_mask))
        if torch.is_grad_enabled() or bn <= g or not one_picture:
            return self._attend(x, mask, prompts, prompt_mask)
        cut = lambda t, i: t if t is None or t.dim() == 2 else t[i:i + g]  # noqa: E731
        return torch.cat([self._attend(x[i:i + g], cut(mask, i), cut(prompts, i), cut(prompt_mask, i))
                          for i in range(0, bn, g)])

    def _attend(self, x, mask, prompts, prompt_mask) -> torch.Tensor:
        bn, n, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q, k, v = self._heads(q * self.scale), self._heads(k), self._heads(v)
        bias = self.rel_bias[self.rel_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        logits = q @ k.transpose(-2, -1) + bias
        if mask is not None:
            nw = mask.shape[0]
            logits = (logits.view(bn // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bn, self.heads, n, n)
        if prompts is not None:
            # the layer's own W_K and W_V project the prompts: they are keys and values only
            kp, vp = F.linear(prompts, self.qkv.weight[c:], self.qkv.bias[c:]).split(c, dim=-1)
            if kp.dim() == 2:  # task prompts: the same for every window
                kp, vp = kp.expand(bn, -1, -1), vp.expand(bn, -1, -1)
            kp, vp = self._heads(kp), self._heads(vp)
            lp = q @ kp.transpose(-2, -1)
            if prompt_mask is not None:
                nw, p = prompt_mask.shape[0], lp.shape[-1]
                lp = (lp.view(bn // nw, nw, self.heads, n, p) + prompt_mask[None, :, None]).view(bn, self.heads, n, p)
            logits = torch.cat([logits, lp], dim=-1)
            v = torch.cat([v, vp], dim=2)
        out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bn, n, c))


class SwinLayer(nn.Module):
    """Pre-norm window attention and MLP, each residual, on N x C x H x W."""

    def __init__(self, dim: int, heads: int, window: int = 8, shift: bool = False, mlp_ratio: float = 2.0):
        super().__init__()
        self.window, self.shift = window, (window // 2 if shift else 0)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """``prompts``: N x C x H/2 x W/2 (instance) or P x C (task), or None."""
        b, c, h, w = x.shape
        win, s = self.window, self.shift
        ph, pw = -h % win, -w % win
        t = x.permute(0, 2, 3, 1)  # B x H x W x C
        y = F.pad(self.norm1(t), (0, 0, 0, pw, 0, ph))  # normalised, then padded (as Swin does)
        hh, ww = y.shape[1:3]
        mask = pmask = ids = None
        if s:
            y = torch.roll(y, (-s, -s), (1, 2))
            ids = region_ids(hh, ww, win, s, x.device)
            mask = shift_mask(ids, ids)
        p = prompts
        if prompts is not None and prompts.dim() == 4:
            if win % 2 or h % 2 or w % 2 or tuple(prompts.shape[2:]) != (h // 2, w // 2):
                raise ValueError(f"instance prompts must be {h // 2}x{w // 2} for a {h}x{w} layer "
                                 f"(even sizes and window), got {tuple(prompts.shape[2:])}")
            pt = F.pad(prompts.permute(0, 2, 3, 1), (0, 0, 0, pw // 2, 0, ph // 2))
            if s:
                pt = torch.roll(pt, (-(s // 2), -(s // 2)), (1, 2))
                pmask = shift_mask(ids, region_ids(hh // 2, ww // 2, win // 2, s // 2, x.device))
            p = window_partition(pt, win // 2)
        out = window_merge(self.attn(window_partition(y, win), mask, p, pmask), win, hh, ww)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        t = t + out[:, :h, :w]
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2).contiguous()


class SwinBlock(nn.Module):
    """An STB: ``depth`` Swin layers (every second one shifted) and a 1x1 projection,
    around a residual. ``prompts`` (per layer) go to the layers that take them."""

    def __init__(self, dim: int, depth: int = 2, heads: int = 4, window: int = 8, mlp_ratio: float = 2.0,
                 zero_init: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(SwinLayer(dim, heads, window, shift=bool(i % 2), mlp_ratio=mlp_ratio)
                                    for i in range(depth))
        self.proj = nn.Conv2d(dim, dim, 1)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def tiling_geometry(self):
        """For :mod:`icmcodec.tiling`: window attention, ``depth`` layers deep."""
        from icmcodec.tiling import Geometry

        return Geometry("window", kernel=self.layers[0].window, padding=len(self.layers))

    def forward(self, x: torch.Tensor, prompts: list | None = None) -> torch.Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            y = layer(y, None if prompts is None else prompts[i])
        return x + self.proj(y)


class TaskPrompts(nn.Module):
    """Learned task prompts for a stack of blocks: one P x C tensor per layer, shared by
    the layer's windows (TransTIC's decoder side). ``tokens`` per layer: a quarter of a
    window's tokens in the paper (16 for 8 x 8 windows)."""

    def __init__(self, dims_depths: list[tuple[int, int]], tokens: int = 16):
        super().__init__()
        self.prompts = nn.ParameterList(
            nn.Parameter(torch.randn(tokens, dim) * 0.02) for dim, depth in dims_depths for _ in range(depth))
        self.depths = [depth for _, depth in dims_depths]

    def per_block(self) -> list[list[torch.Tensor]]:
        out, k = [], 0
        for d in self.depths:
            out.append([self.prompts[k + i] for i in range(d)])
            k += d
        return out
