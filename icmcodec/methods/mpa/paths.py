"""MPA's per-task paths in TIC's decoder: the wrapped MLP, its side path and predictor.

Every Swin layer of the base's g_s has an MLP (``g_s.<i>.layers.<j>.mlp``). MPA wraps it
by that name (peft's way: the shared Swin layer's code and the base's weights are
untouched) in a :class:`MultiPathMlp`:

* the **main path** is the base's MLP, frozen;
* a **predictor** (LayerNorm-free two-layer MLP, C -> C/4 -> 1) scores each token;
* at strength rho a token goes through the task's **side path** when its score plus
  logit(rho) is positive, the rest through the main path, and the outputs are put back
  in place (aggregation). The rule is per token, so tiles decode exactly as the whole
  picture, and rho = 0 selects nothing: the main path's output, bit for bit;
* the side path is the main MLP plus a small bottleneck MLP (C -> hidden -> C, GELU)
  whose output layer starts at zero, so an untrained path set is the base exactly. (The
  paper trains separate side MLPs from scratch on GPUs; starting from the main path is
  what a few hundred CPU steps can afford.)

Training (:meth:`MultiPathMlp.forward` with grad on) uses the same choice,
``M = 1[s + logit(rho) > 0]``, with the gradient of ``sigmoid(s + logit(rho))`` passed
straight through; the ratio loss ``(rho - mean M)^2`` per layer (the paper's eq. 4), with
rho drawn over its range, makes the predictor spread its scores so that every rho
selects about rho of the tokens, the ones the task needs most. (A first run drew the
mask with logistic noise instead, as DynamicViT does: the selected fraction matched rho
in training, but at coding time, without the noise, its scores all sat near 0 and rho
0.25 selected nothing: the rule must be the one decoding uses.)
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SidePath(nn.Module):
    """The task's bottleneck MLP added to the main path's output (zero at start)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.up(F.gelu(self.down(t)))


class Predictor(nn.Module):
    """A score per token (larger: the task's path); starts near 0 (unbiased)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, max(8, dim // 4))
        self.fc2 = nn.Linear(max(8, dim // 4), 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(t)))[..., 0]


class TaskPath(nn.Module):
    """One wrapped MLP's trainable part: side path and predictor."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.side = SidePath(dim, hidden)
        self.predictor = Predictor(dim)


def rho_logit(rho: float) -> float:
    return math.log(rho / (1 - rho)) if 0 < rho < 1 else (math.inf if rho >= 1 else -math.inf)


class MultiPathMlp(nn.Module):
    """The base's MLP (``main``) with one task's path at strength ``rho`` (see the module
    docstring). ``last_mask`` keeps the last mask (the ratio loss, the tests)."""

    def __init__(self, main: nn.Module, path: TaskPath, rho: float):
        super().__init__()
        self.main, self.path, self.rho = main, path, float(rho)
        self.last_mask: torch.Tensor | None = None

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        out = self.main(t)
        if self.rho <= 0:
            self.last_mask = None
            return out
        score = self.path.predictor(t) + rho_logit(self.rho)
        if torch.is_grad_enabled():
            # training: the coding-time choice, with the gradient of its sigmoid (straight through)
            soft = torch.sigmoid(score)
            mask = (score > 0).to(soft.dtype) + soft - soft.detach()
            self.last_mask = mask
            return out + mask[..., None] * self.path.side(t)
        mask = score > 0
        self.last_mask = mask
        if not bool(mask.any()):
            return out
        # only the selected tokens run the side path (the saving a small rho buys)
        out = out.clone()
        out[mask] = out[mask] + self.path.side(t[mask])
        return out


def mlp_names(g_s: nn.Module) -> list[str]:
    """The names of the Swin MLPs MPA wraps, in order (``<i>.layers.<j>.mlp``)."""
    return [name for name, m in g_s.named_modules() if name.endswith(".mlp") and ".layers." in name]


class PathSet(nn.Module):
    """A task's paths: one :class:`TaskPath` per wrapped MLP, keyed by its name (dots as
    ``_``: module keys cannot hold dots)."""

    def __init__(self, names: list[str], dim: int, hidden: int):
        super().__init__()
        self.names = list(names)
        self.paths = nn.ModuleDict({n.replace(".", "_"): TaskPath(dim, hidden) for n in names})

    def path(self, name: str) -> TaskPath:
        return self.paths[name.replace(".", "_")]


def with_paths(g_s: nn.Module, paths: PathSet, rho: float) -> nn.Module:
    """A copy of ``g_s`` whose Swin MLPs are wrapped with ``paths`` at ``rho``. Only the
    module objects are copied: every tensor is the base's own (shared, not duplicated),
    so the base and any number of such copies decode side by side."""
    shared = {id(t): t for t in list(g_s.parameters()) + list(g_s.buffers())}
    out = copy.deepcopy(g_s, memo=dict(shared))
    for name in paths.names:
        parent, _, leaf = name.rpartition(".")
        holder = out.get_submodule(parent)
        setattr(holder, leaf, MultiPathMlp(getattr(holder, leaf), paths.path(name), rho))
    return out


def wrapped(g: nn.Module) -> list[MultiPathMlp]:
    return [m for m in g.modules() if isinstance(m, MultiPathMlp)]


def ratio_loss(g: nn.Module, rho: float) -> torch.Tensor:
    """The paper's eq. 4: the mean over wrapped MLPs of (rho - mean mask)^2."""
    terms = [(rho - m.last_mask.float().mean()) ** 2 for m in wrapped(g) if m.last_mask is not None]
    return torch.stack(terms).mean() if terms else torch.zeros(())
