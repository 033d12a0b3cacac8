"""The task feature distance: how far a coded picture is from the original in the eyes
of a task network (TransTIC's perceptual loss, eq. 3). Trainers of every method that
fits a codec to a task use it (``icmcodec.train --task``, TransTIC's prompt sets)."""
from __future__ import annotations

import torch


def task_features(net, x: torch.Tensor) -> list[torch.Tensor]:
    """The task network's backbone features of pictures in [0, 1] (its own input scaling)."""
    return net.backbone((x - net.mean) / net.std)


def perceptual_distance(net, x_hat: torch.Tensor, ref: list[torch.Tensor]) -> torch.Tensor:
    """Per picture: mean over stages of |f(x_hat) - f(x)|^2 / |f(x)|^2, with ``ref`` the
    :func:`task_features` of the originals."""
    out = []
    for f, r in zip(task_features(net, x_hat), ref):
        out.append((f - r).square().flatten(1).sum(1) / r.square().flatten(1).sum(1).clamp(min=1e-6))
    return torch.stack(out).mean(0)
