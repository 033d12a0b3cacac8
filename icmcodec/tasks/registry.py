"""The task registry: one entry per machine task, and nothing keeps its own list.

Each :class:`TaskSpec` says how a task network is shaped (dense map or one vector per
image, output channels), how it is trained (``loss``), what its output is
(``postprocess``: logits of one picture -> the array the writer takes), how it is
scored (``metric``: an accumulator with ``update(output, label)`` and ``value()``),
how the output is written (``write``) and how labelled data is read (``dataset``).

Conventions of the outputs (what ``postprocess`` returns and ``write`` takes):
semseg H x W class ids; boundary and saliency H x W probabilities; depth H x W metres;
normal H x W x 3 unit vectors; cls a probability vector over the label set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from bitstream import TaskTag
from icmcodec.tasks import datasets, metrics, writers

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist")
# The colours the CamVid / SegNet tutorial uses for these classes.
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
CAMVID_VOID = 11


# ---------------------------------------------------------------- metric accumulators
class MIoU(metrics.ConfusionMIoU):
    name = "mIoU"

    def __init__(self, labels):
        super().__init__(len(labels), ignore_index=CAMVID_VOID if len(labels) == len(CAMVID_CLASSES) else None)


class ODS(metrics.BoundaryODS):
    name = "ODS-F"

    def __init__(self, labels=None, thresholds: int = 99, matching: str = "greedy"):
        super().__init__(thresholds=thresholds, matching=matching)

    def update(self, prob, gts):
        super().update(prob, datasets.resolve(gts))


class Top1:
    name = "top-1"
    TOTALS = ("hits", "n")

    def __init__(self, labels=None):
        self.hits = self.n = 0

    def update(self, probs, label) -> None:
        self.hits += int(int(np.argmax(probs)) == int(label))
        self.n += 1

    def value(self) -> float:
        return self.hits / self.n if self.n else 0.0


class DepthRMSE:
    """Dataset-level RMSE (metres) and AbsRel over valid pixels; ``value`` is RMSE."""
    name = "RMSE"
    TOTALS = ("se", "ar", "n")

    def __init__(self, labels=None):
        self.se = self.ar = 0.0
        self.n = 0

    def update(self, pred, gt) -> None:
        m = gt > 0
        d, g = np.asarray(pred, np.float64)[m], np.asarray(gt, np.float64)[m]
        self.se += float(((d - g) ** 2).sum())
        self.ar += float((np.abs(d - g) / g).sum())
        self.n += int(m.sum())

    def value(self) -> float:
        return float(np.sqrt(self.se / self.n)) if self.n else float("nan")

    def absrel(self) -> float:
        return self.ar / self.n if self.n else float("nan")


class AngularError:
    name = "mean angular error"
    TOTALS = ("sum", "n")

    def __init__(self, labels=None):
        self.sum = 0.0
        self.n = 0

    def update(self, pred, gt) -> None:
        valid = np.linalg.norm(gt, axis=-1) > 0
        k = int(valid.sum())
        if k:
            self.sum += metrics.mean_angular_error(pred, gt, valid) * k
            self.n += k

    def value(self) -> float:
        return self.sum / self.n if self.n else float("nan")


class MaxF(metrics.SaliencyMaxF):
    name = "max-F"

    def __init__(self, labels=None):
        super().__init__()


# ---------------------------------------------------------------- losses (torch)
def _semseg_loss(logits, target):
    import torch.nn.functional as F

    return F.cross_entropy(logits, target.long(), ignore_index=CAMVID_VOID)


def _boundary_loss(logits, target):
    """RCF's class-balanced BCE: ``target`` is the fraction of annotators marking a
    pixel; >= 0.3 is an edge, 0 is not, pixels in between are left out."""
    import torch.nn.functional as F

    pos = (target >= 0.3).float()
    neg = (target == 0).float()
    n_pos, n_neg = pos.sum(), neg.sum()
    w = pos * (n_neg / (n_pos + n_neg)) + neg * 1.1 * (n_pos / (n_pos + n_neg))
    return F.binary_cross_entropy_with_logits(logits[:, 0], pos, weight=w)


def _depth_loss(logits, target):
    import torch

    m = target > 0
    return (logits[:, 0][m] - torch.log(target[m])).abs().mean() if m.any() else logits.sum() * 0


def _normal_loss(logits, target):
    import torch.nn.functional as F

    m = target.norm(dim=1) > 0
    cos = F.cosine_similarity(logits, target, dim=1)
    return (1 - cos[m]).mean() if m.any() else logits.sum() * 0


def _saliency_loss(logits, target):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits[:, 0], target.float())


def _cls_loss(logits, target):
    import torch.nn.functional as F

    return F.cross_entropy(logits, target.long(), label_smoothing=0.1)


# ---------------------------------------------------------------- postprocessing (numpy)
def _sigmoid(a):
    return 1 / (1 + np.exp(-np.asarray(a, np.float64)))


def edge_nms(prob: np.ndarray, radius: int = 1, border: int = 5) -> np.ndarray:
    """Non-maximum suppression of an edge-probability map across the edge direction,
    as the structured-edge and HED evaluations do before scoring: the orientation comes
    from second derivatives of a smoothed map, a pixel survives if it is not below
    (1/1.01 of) its neighbours at +-1..radius along the normal; responses fade out
    linearly over ``border`` pixels at the picture's edges."""
    from scipy.ndimage import convolve1d, map_coordinates

    e = np.asarray(prob, np.float64)
    tri = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1], np.float64) / 25.0
    sm = convolve1d(convolve1d(e, tri, axis=0, mode="nearest"), tri, axis=1, mode="nearest")
    oy, ox = np.gradient(sm)
    oxx, oyy, oxy = np.gradient(ox, axis=1), np.gradient(oy, axis=0), np.gradient(oy, axis=1)
    theta = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)
    yy, xx = np.mgrid[0:e.shape[0], 0:e.shape[1]].astype(np.float64)
    keep = np.ones(e.shape, bool)
    for d in range(-radius, radius + 1):
        if d:
            nb = map_coordinates(e, [yy + d * np.sin(theta), xx + d * np.cos(theta)], order=1, mode="nearest")
            keep &= e * 1.01 >= nb
    out = np.where(keep, e, 0.0)
    h, w = e.shape
    ramp = lambda n: np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / border)  # noqa: E731
    return out * ramp(h)[:, None] * ramp(w)[None, :]


def _softmax(a):
    a = np.asarray(a, np.float64)
    e = np.exp(a - a.max())
    return e / e.sum()


def _normals(a):
    n = np.moveaxis(np.asarray(a, np.float64), 0, -1)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class TaskSpec:
    name: str
    tag: TaskTag
    kind: str  # "dense" or "global"
    out_channels: int | None  # None: the size of the label set (cls)
    labels: tuple[str, ...] | None  # None: from the dataset (cls) or none (regression)
    loss: Callable
    postprocess: Callable  # logits of one picture (C x H x W or C) -> output array
    metric: Callable  # labels -> accumulator
    write: Callable  # (output, labels) -> {suffix: bytes}
    dataset: Callable  # (root, split) -> samples
    summary: str
    higher_is_better: bool = True
    palette: tuple | None = None


def _cls_dataset(root, split):
    return datasets.image_folder(root, split)[0]


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("semseg", TaskTag.SEMSEG, "dense", 11, CAMVID_CLASSES, _semseg_loss,
             lambda lg: np.asarray(lg).argmax(0).astype(np.uint8), MIoU,
             lambda out, labels: writers.write_semseg(out, list(labels), list(CAMVID_PALETTE)), datasets.camvid,
             "semantic segmentation, CamVid's 11 classes (mIoU)", palette=CAMVID_PALETTE),
    TaskSpec("boundary", TaskTag.BOUNDARY, "dense", 1, None, _boundary_loss, lambda lg: edge_nms(_sigmoid(lg[0])), ODS,
             lambda out, labels: writers.write_boundary(out), datasets.bsds500,
             "object boundaries, BSDS500 (ODS F-measure)"),
    TaskSpec("cls", TaskTag.CLS, "global", None, None, _cls_loss, _softmax, Top1,
             lambda out, labels: writers.write_cls(out, list(labels)), _cls_dataset,
             "image classification, ImageFolder classes (top-1)"),
    TaskSpec("depth", TaskTag.DEPTH, "dense", 1, None, _depth_loss, lambda lg: np.exp(np.asarray(lg[0], np.float64)),
             DepthRMSE, lambda out, labels: writers.write_depth(out), datasets.depth_folder,
             "monocular depth in metres, NYUD-v2 layout (RMSE, AbsRel)", higher_is_better=False),
    TaskSpec("normal", TaskTag.NORMAL, "dense", 3, None, _normal_loss, _normals, AngularError,
             lambda out, labels: writers.write_normal(out), datasets.normal_folder,
             "surface normals (mean angular error, degrees)", higher_is_better=False),
    TaskSpec("saliency", TaskTag.SALIENCY, "dense", 1, None, _saliency_loss, lambda lg: _sigmoid(lg[0]), MaxF,
             lambda out, labels: writers.write_saliency(out), datasets.saliency_folder,
             "salient object detection (max F-measure)"),
)}


def task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (one of: {', '.join(TASKS)})") from None
