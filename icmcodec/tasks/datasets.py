"""Folder-layout loaders: (image, label) samples for every task, numpy only.

Each loader takes a dataset root and a split and yields :class:`Sample` objects whose
``label`` has the task's ground-truth form (what :mod:`icmcodec.tasks.metrics` takes):

| task | layout under ROOT | label |
|---|---|---|
| semseg | CamVid/SegNet: ``SPLIT/<stem>.{png,webp}``, ``SPLITannot/<stem>.png`` | H x W uint8 class ids (11 = void) |
| boundary | BSDS500: ``images/SPLIT/<id>.jpg``, ``groundTruth/SPLIT/<id>.mat`` | list of H x W uint8 0/1 maps, one per annotator |
| cls | ``SPLIT/<class>/<image>`` (Caltech-101 and any ImageFolder) | class index into sorted class names |
| depth | ``SPLIT/images/<stem>.*``, ``SPLIT/depth/<stem>.png`` (16-bit, millimetres; 0 = none; NYUD-v2 exported so) | H x W float64 metres |
| normal | ``SPLIT/images/<stem>.*``, ``SPLIT/normals/<stem>.png`` (8-bit RGB, ``(n+1)/2*255``; black = none) | H x W x 3 float64 unit vectors (zeros = none) |
| saliency | ``SPLIT/images/<stem>.*``, ``SPLIT/saliency/<stem>.png`` (8-bit, > 127 salient; PASCAL-Context / PASCAL-S exported so); or SOD's: masks ``SPLIT/<id>.png`` with the pictures in ``../bsds500/images/SPLIT/`` | H x W bool |

Missing folders or unmatched stems raise ``DatasetError`` with the path that is missing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from icmcodec.imageio import IMAGE_SUFFIXES, load_rgb
from icmcodec.tasks.writers import DEPTH_SCALE


class DatasetError(FileNotFoundError):
    pass


@dataclass
class Sample:
    name: str
    image_path: Path
    label: object

    def image(self) -> np.ndarray:
        return load_rgb(self.image_path)

    def target(self):
        """The label itself, read from disk first if it is a lazy one."""
        return resolve(self.label)


def resolve(label):
    """A label as the metrics take it (lazy BSDS labels are read here)."""
    return label.load() if isinstance(label, _LazyLabel) else label


def _need(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(f"missing: {path}")
    return path


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(_need(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _paired(root: Path, split: str, label_dir: str) -> Iterator[tuple[str, Path, Path]]:
    images = _images(root / split / "images")
    labels = _need(root / split / label_dir)
    for stem, img in images.items():
        yield stem, img, _need(labels / f"{stem}.png")


def camvid(root: str | Path, split: str) -> list[Sample]:
    root = Path(root)
    images = _images(root / split)
    annot = _need(root / f"{split}annot")
    return [Sample(stem, p, np.asarray(Image.open(_need(annot / f"{stem}.png")), dtype=np.uint8))
            for stem, p in images.items()]


def bsds_boundaries(mat_path: Path) -> list[np.ndarray]:
    from scipy.io import loadmat

    gt = loadmat(str(mat_path))["groundTruth"]
    return [np.asarray(gt[0, i]["Boundaries"][0, 0], dtype=np.uint8) for i in range(gt.shape[1])]


def bsds500(root: str | Path, split: str) -> list[Sample]:
    root = Path(root)
    images = _images(root / "images" / split)
    gt = _need(root / "groundTruth" / split)
    return [Sample(stem, p, _LazyLabel(bsds_boundaries, _need(gt / f"{stem}.mat"))) for stem, p in images.items()]


class _LazyLabel:
    """A label read from disk only when asked for (BSDS .mat files are large)."""

    def __init__(self, fn, path):
        self.fn, self.path = fn, path

    def load(self):
        return self.fn(self.path)


def image_folder(root: str | Path, split: str) -> tuple[list[Sample], list[str]]:
    base = _need(Path(root) / split)
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    samples = []
    for i, c in enumerate(classes):
        for p in sorted((base / c).iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(f"{c}/{p.stem}", p, i))
    return samples, classes


def depth_folder(root: str | Path, split: str) -> list[Sample]:
    return [Sample(stem, img, np.asarray(Image.open(lab), dtype=np.float64) / DEPTH_SCALE)
            for stem, img, lab in _paired(Path(root), split, "depth")]


def normal_folder(root: str | Path, split: str) -> list[Sample]:
    out = []
    for stem, img, lab in _paired(Path(root), split, "normals"):
        a = np.asarray(Image.open(lab).convert("RGB"), dtype=np.float64)
        n = a / 255 * 2 - 1
        norm = np.linalg.norm(n, axis=-1, keepdims=True)
        n = np.where((a.sum(-1, keepdims=True) > 0) & (norm > 0), n / np.maximum(norm, 1e-12), 0.0)
        out.append(Sample(stem, img, n))
    return out


def saliency_folder(root: str | Path, split: str) -> list[Sample]:
    root = Path(root)
    if (root / split / "images").is_dir() or not (root / split).is_dir():
        pairs = list(_paired(root, split, "saliency"))
    else:  # SOD: masks only, for BSDS500 pictures found beside the dataset
        pictures = _images(root.parent / "bsds500" / "images" / split)
        masks = sorted(p for p in (root / split).iterdir() if p.suffix.lower() == ".png")
        missing = [m.stem for m in masks if m.stem not in pictures]
        if missing:
            raise DatasetError(f"missing: {root.parent / 'bsds500' / 'images' / split / missing[0]}.jpg "
                               f"(and {len(missing) - 1} more SOD pictures)")
        pairs = [(m.stem, pictures[m.stem], m) for m in masks]
    return [Sample(stem, img, np.asarray(Image.open(lab).convert("L")) > 127) for stem, img, lab in pairs]
