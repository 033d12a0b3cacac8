"""Running a task network on pictures: what ``icm analyze``, ``icm decode`` and the
rate-accuracy benchmark all call, so that they score and write exactly the same thing.

A task network is a zoo folder whose ``config.json`` has ``"kind": "tasknet"``: the
task, the backbone name, the head, the label set and the input policy; its
``model.safetensors`` holds the weights in float16 (float32 at run time).

Input policy (``config["input"]``):

* dense tasks: the picture is resized by ``scale`` (antialiased) and the logits are
  resized back to the picture's own size before ``postprocess``, so every output has
  the input's size;
* global tasks: the short side is resized to ``resize_short`` and the centre
  ``crop`` x ``crop`` is taken.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmcodec.tasks import tiled
from icmcodec.tasks.nets import TaskNet
from icmcodec.tasks.registry import TaskSpec, task


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of C x H x W or N x C x H x W."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x[None] if x.dim() == 3 else x, size=tuple(size), mode="bilinear", align_corners=False,
                      antialias=True)
    return y[0] if x.dim() == 3 else y


def center_view(x: torch.Tensor, resize_short: int, crop: int) -> torch.Tensor:
    """C x H x W -> C x crop x crop: short side to ``resize_short``, centre crop."""
    h, w = x.shape[-2:]
    s = resize_short / min(h, w)
    nh, nw = max(crop, round(h * s)), max(crop, round(w * s))
    x = resize(x, (nh, nw))
    t, left = (nh - crop) // 2, (nw - crop) // 2
    return x[:, t:t + crop, left:left + crop]


class TaskModel:
    """A loaded task network with its task spec, label set and input policy."""

    def __init__(self, spec: TaskSpec, config: dict, net: TaskNet, model_hash: bytes = bytes(16),
                 device: str = "cpu"):
        self.spec, self.config, self.net, self.hash, self.device = spec, config, net.eval().to(device), model_hash, device
        self.labels = tuple(config.get("labels") or spec.labels or ())

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "TaskModel":
        from safetensors.torch import load as st_load

        from icmcodec.zoo import model_hash

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        blob = (folder / "model.safetensors").read_bytes()
        net = build_net(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in st_load(blob).items()}
        net.load_state_dict(state)
        return cls(task(config["task"]), config, net, model_hash(blob), device)

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        x = to_tensor(rgb)
        inp = self.config["input"]
        if self.spec.kind == "global":
            return center_view(x, inp["resize_short"], inp["crop"])
        s = float(inp.get("scale", 1.0))
        h, w = x.shape[-2:]
        return resize(x, (max(32, round(h * s)), max(32, round(w * s))))

    @torch.no_grad()
    def logits(self, rgbs: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
        """Logits per picture, dense ones at the picture's own size."""
        out: list[np.ndarray | None] = [None] * len(rgbs)
        xs = [self.prepare(a) for a in rgbs]
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(xs):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), batch):
                part = idx[k:k + batch]
                y = self.net(torch.stack([xs[i] for i in part]).to(self.device)).float()
                for j, i in enumerate(part):
                    v = y[j]
                    if self.spec.kind == "dense":
                        v = F.interpolate(v[None], size=rgbs[i].shape[:2], mode="bilinear", align_corners=False)[0]
                    out[i] = v.cpu().numpy()
        return out  # type: ignore[return-value]

    def predict(self, rgbs: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
        """Outputs per picture; a dense task on a picture over one tile runs in tiles
        (:mod:`icmcodec.tasks.tiled`), the others whole."""
        out: list[np.ndarray | None] = [None] * len(rgbs)
        whole = [i for i, rgb in enumerate(rgbs) if not self.tiled(rgb)]
        for i, lg in zip(whole, self.logits([rgbs[i] for i in whole], batch)):
            out[i] = self.spec.postprocess(lg)
        for i, rgb in enumerate(rgbs):
            if out[i] is None:
                out[i] = self.predict_tiled(rgb)
        return out  # type: ignore[return-value]

    def tiled(self, rgb: np.ndarray) -> bool:
        """Whether :meth:`predict` runs this picture in tiles: dense tasks whose network
        sees the picture at its own scale (a network that resizes runs whole)."""
        return (self.spec.kind == "dense" and float(self.config["input"].get("scale", 1.0)) == 1.0
                and tiled.needs_tiles(*rgb.shape[:2]))

    @torch.no_grad()
    def predict_tiled(self, rgb: np.ndarray) -> np.ndarray:
        """A dense task's output on a large picture, in overlapping tiles (the picture
        edge-padded to the tiles' grid, the output cropped back to its size)."""
        h, w = rgb.shape[:2]
        a = tiled.ALIGN
        grid = (-(-h // a) * a, -(-w // a) * a)

        def logits(y0, y1, x0, x1):
            return self.net(to_tensor(tiled.padded_tile(rgb, y0, y1, x0, x1))[None].to(self.device))[0]

        return tiled.predict_tiled(logits, (h, w), grid, self.spec.postprocess)

    @property
    def name(self) -> str:
        return self.config.get("name", "")

    def write(self, output: np.ndarray) -> dict[str, bytes]:
        """The output files (``{suffix: bytes}``); a JSON output names this network."""
        from icmcodec.tasks.writers import with_sources

        return with_sources(self.spec.write(output, self.labels),
                            {"task_network": {"name": self.name, "hash": self.hash.hex()}})


def build_net(config: dict, drop_path_rate: float = 0.0, backbone_weights=None) -> TaskNet:
    spec = task(config["task"])
    out = spec.out_channels or len(config["labels"])
    inp = config.get("input", {})
    return TaskNet(spec.kind, out, config.get("backbone", "icm_pvt_nano"), backbone_weights,
                   head=config.get("head"), drop_path_rate=drop_path_rate, backbone_args=config.get("backbone_args"),
                   mean=inp.get("mean"), std=inp.get("std"))


def save_tasknet(state: dict, config: dict, folder: str | Path) -> bytes:
    """Write a task network folder: ``config.json`` + float16 ``model.safetensors``
    (float16 halves the download; the metric change is below what val can show);
    returns its hash."""
    from safetensors.torch import save as st_save

    from icmcodec.zoo import write_model

    blob = st_save({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()})
    return write_model(folder, config, blob)


@lru_cache(maxsize=8)
def _load_tasknet(path: str, weights_hash: bytes, device: str) -> TaskModel:
    """Keyed by the weights' hash too: a folder replaced in place is loaded again."""
    return TaskModel.load(path, device)


def find_tasknet(task_name: str, name: str | None = None, model_hash: bytes | None = None,
                 device: str = "cpu") -> TaskModel:
    """A machine task's network from the model store (cached): by name or folder, by the
    hash a file header names, or the task's installed default. Raises
    :class:`icmcodec.zoo.ModelNotFoundError` (a ``LookupError``) when there is none, or
    a network made for another task. What trainers and codecs load task networks with
    (the pipeline is above them)."""
    from icmcodec import zoo

    entry = zoo.find(name, task=task_name, model_hash=model_hash, kind="tasknet")
    if entry.config.get("task") != task_name:
        raise zoo.ModelNotFoundError(f"task network {entry.name} is for {entry.config.get('task')}, not {task_name}")
    return _load_tasknet(str(entry.path.resolve()), entry.hash(), str(device))
