"""The training toolkit every trainer is built from (below every method).

One copy of what each training loop needs, so a method's trainer is its loss and its
loop and nothing else:

* :class:`Run`: the run folder: ``train_config.json`` (written on a fresh run, read back
  on ``--resume``), ``last.pt`` saved atomically (:func:`save_checkpoint`: a temporary
  name in the same folder, then ``os.replace``, so a killed save never replaces a good
  checkpoint) and loaded by :meth:`Run.resume`, ``log.csv`` (:class:`CsvLog`);
* :func:`parse_data` (the ``--data DIR[:WEIGHT]`` spec, parsed once, with one clear
  message for a bad one), :func:`list_images` and :class:`CropSampler` (weighted random
  crops held in memory);
* :func:`rd_bpp`: estimated bits per pixel from a forward pass's likelihoods;
* :func:`lr_at`: the learning-rate schedule (linear warm-up, then a cosine or a step
  decay to a floor);
* :func:`pick_device` and :func:`setup_distributed`: the GPU when torch sees one, the
  CPU otherwise (``--device`` to choose);
* :func:`init_from`: a warm start from a checkpoint or a model folder of any method;
* :class:`TimeBudget`: lowers the step count so a run ends in time.

It imports only the picture reader below it (:mod:`icmcodec.imageio`): methods,
task trainers and the generic entry points import it, never the other way round.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from icmcodec.imageio import IMAGE_SUFFIXES, atomic_write, load_rgb

CONFIG = "train_config.json"
CHECKPOINT = "last.pt"
LOG = "log.csv"


# ------------------------------------------------------------------ the run folder
def save_checkpoint(obj: dict, path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, then
    ``os.replace``: a reader (or a resume after a crash) sees the old checkpoint or the
    new one, never half of one. A save that fails removes its temporary file; one that
    is killed leaves it behind, under a name :class:`Run` cleans up, and ``path``
    untouched."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


class Run:
    """A run folder: its config, its last checkpoint, its logs.

    Created if missing; the temporary files of a save that was killed are removed."""

    def __init__(self, folder: str | Path, create: bool = True):
        self.dir = Path(folder)
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
        if self.dir.is_dir():
            for stale in self.dir.glob(f".{CHECKPOINT}.*.part"):
                stale.unlink(missing_ok=True)

    @property
    def checkpoint(self) -> Path:
        return self.dir / CHECKPOINT

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def write_config(self, config: dict, indent: int = 2) -> None:
        atomic_write(self.config_path, (json.dumps(config, indent=indent) + "\n").encode())

    def read_config(self) -> dict:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise SystemExit(f"error: {self.dir} is not a run folder (no {CONFIG}); start it without --resume") \
                from None

    def save(self, obj: dict) -> None:
        """Atomically replace ``last.pt`` (see :func:`save_checkpoint`)."""
        save_checkpoint(obj, self.checkpoint)

    def load(self) -> dict:
        if not self.has_checkpoint():
            raise SystemExit(f"error: {self.checkpoint} does not exist (nothing to resume or export)")
        return load_checkpoint(self.checkpoint)

    def resume(self, *modules_and_optimisers: tuple[str, object]) -> tuple[int, dict | None]:
        """Load ``last.pt`` into each ``(key, module or optimiser)`` pair (a ``None``
        object or a missing/``None`` entry is skipped) and return (its step, the
        checkpoint); (0, None) when the folder has no checkpoint yet."""
        if not self.has_checkpoint():
            return 0, None
        ck = self.load()
        for key, obj in modules_and_optimisers:
            if obj is not None and ck.get(key) is not None:
                obj.load_state_dict(ck[key])
        return int(ck.get("step", 0)), ck

    def log(self, header: list[str], name: str = LOG) -> "CsvLog":
        return CsvLog(self.dir / name, header)


class CsvLog:
    """Append rows to a CSV file, header once (a new file), flushed after every row."""

    def __init__(self, path: Path, header: list[str] | None):
        new = not Path(path).exists()
        self.f = open(path, "a", newline="")
        self.w = csv.writer(self.f)
        if new and header:
            self.w.writerow(header)
            self.f.flush()

    def write(self, row: list) -> None:
        self.w.writerow(row)
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# ------------------------------------------------------------------ warm starts
def read_arch(path: str | Path) -> dict:
    """The architecture (the method config's fields) of a run's checkpoint or of a
    shipped model folder."""
    path = Path(path)
    if path.is_dir():
        return json.loads((path / "config.json").read_text())["arch"]
    if not path.exists():
        raise SystemExit(f"error: --init: {path} does not exist")
    return load_checkpoint(path)["config"]


def warm_start_source(path: str | Path, trainable_of) -> dict:
    """``{"model": state dict, "config": arch dict, "step", "method"}`` of a run's
    checkpoint or of a shipped model folder, whose tensors ``trainable_of(method)``
    (``(config, arrays) -> trainable model``, a method's registered ``trainable``)
    makes trainable."""
    if Path(path).is_dir():
        from icmcodec.zoo import entry_at, load_state

        config, arrays, _ = load_state(entry_at(path))
        method = config.get("method", "hyperprior")
        src = trainable_of(method)(config, arrays)
        return {"model": src.state_dict(), "config": config["arch"], "step": config.get("train_step"),
                "method": method}
    if not Path(path).exists():
        raise SystemExit(f"error: --init: {path} does not exist")
    ck = load_checkpoint(path)
    return {"model": ck["model"], "config": ck["config"], "step": ck.get("step"),
            "method": ck.get("method", "hyperprior")}


def init_from(model, path: str | Path, trainable_of) -> None:
    """Warm start a trainable model from a checkpoint or a shipped model folder of the
    same or another method: every tensor the two share is copied (a model whose layout
    differs from its source's renames them in its ``adapt_warm_start``). Where both
    have per-level gain vectors (``log2_gain`` and ``lambdas``), the levels/lambdas may
    differ: the gains are interpolated to the new lambdas in log space (and may
    extrapolate)."""
    ck = warm_start_source(path, trainable_of)
    gains = ("log2_gain" in ck["model"] and hasattr(model, "log2_gain") and "lambdas" in ck["config"]
             and hasattr(model.cfg, "lambdas"))
    state = {k: v for k, v in ck["model"].items() if not (gains and k == "log2_gain")}
    if hasattr(model, "adapt_warm_start"):  # a method whose layout differs from its source's
        state = model.adapt_warm_start(state, ck["config"])
    model.load_state_dict(state, strict=False)
    if gains:
        old = ck["model"]["log2_gain"].double()
        old_l = np.log(np.asarray(ck["config"]["lambdas"], dtype=np.float64))
        rows = []
        for lam in np.log(np.asarray(model.cfg.lambdas, dtype=np.float64)):
            i = int(np.clip(np.searchsorted(old_l, lam) - 1, 0, len(old_l) - 2))
            t = (lam - old_l[i]) / (old_l[i + 1] - old_l[i])
            rows.append(old[i] * (1 - t) + old[i + 1] * t)
        with torch.no_grad():
            model.log2_gain.copy_(torch.stack(rows).float())
    print(f"initialised from {path} (step {ck.get('step')})", file=sys.stderr)


# ------------------------------------------------------------------ data
def parse_data(specs: list[str] | str, flag: str = "--data") -> list[tuple[str, float]]:
    """``DIR`` or ``DIR:WEIGHT`` (repeatable) -> [(folder, weight)]; the weight defaults
    to 1 and must be a positive number. A bad spec exits with one line naming it."""
    out = []
    for spec in [specs] if isinstance(specs, str) else specs:
        folder, sep, w = str(spec).rpartition(":")
        if not sep or "/" in w or "\\" in w:  # no weight (a colon inside the path is not one)
            folder, sep, w = str(spec), "", ""
        try:
            weight = 1.0 if not sep else float(w or "nan")  # "DIR:" names no weight
        except ValueError:
            weight = float("nan")
        if not folder or not math.isfinite(weight) or weight <= 0:
            raise SystemExit(f"error: {flag} {spec}: expected DIR or DIR:WEIGHT with WEIGHT a positive number")
        out.append((folder, weight))
    return out


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


class CropSampler:
    """Random crops (and horizontal flips) from several weighted folders held in memory
    as uint8 arrays. ``sources``: [(folder, weight)] or ``--data`` specs."""

    def __init__(self, sources: list, crop: int, seed, quiet: bool = False):
        if sources and isinstance(sources[0], str):
            sources = parse_data(sources)
        if not sources:
            raise SystemExit("error: no training data (--data DIR[:WEIGHT])")
        self.rng = np.random.default_rng(seed)
        self.crop = crop
        self.groups: list[list[np.ndarray]] = []
        weights = []
        for folder, w in sources:
            imgs = [a for a in (load_rgb(p) for p in list_images(Path(folder))) if min(a.shape[:2]) >= crop]
            if not imgs:
                raise SystemExit(f"error: no image of at least {crop}px a side in {folder}")
            self.groups.append(imgs)
            weights.append(w)
            if not quiet:
                print(f"data: {folder}: {len(imgs)} images, weight {w}", file=sys.stderr)
        self.weights = np.asarray(weights, dtype=np.float64) / sum(weights)

    def batch_u8(self, n: int) -> torch.Tensor:
        """n crops as uint8 (n, 3, crop, crop): a quarter of the bytes to a GPU."""
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(n):
            g = self.groups[self.rng.choice(len(self.groups), p=self.weights)]
            a = g[self.rng.integers(len(g))]
            y = self.rng.integers(a.shape[0] - self.crop + 1)
            x = self.rng.integers(a.shape[1] - self.crop + 1)
            c = a[y : y + self.crop, x : x + self.crop]
            if self.rng.random() < 0.5:
                c = c[:, ::-1]
            out[i] = c
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    def batch(self, n: int, device="cpu") -> torch.Tensor:
        """n crops as float in [0, 1] on ``device`` (sent as uint8)."""
        return self.batch_u8(n).to(device, non_blocking=True).float().div_(255.0)


# ------------------------------------------------------------------ rate
def rd_bpp(out: dict, pixels) -> torch.Tensor:
    """Estimated bits per pixel of each picture from a forward pass's likelihoods
    (``y_lik`` and ``z_lik``). ``pixels``: the pictures (N x C x H x W: H * W pixels
    each) or the pixel count."""
    if torch.is_tensor(pixels):
        pixels = pixels.shape[-2] * pixels.shape[-1]
    bits_y = -torch.log2(out["y_lik"]).flatten(1).sum(1)
    bits_z = -torch.log2(out["z_lik"]).flatten(1).sum(1)
    return (bits_y + bits_z) / pixels


# ------------------------------------------------------------------ schedule
def lr_at(step: int, total: int, base: float, warmup: int = 500, *, decay_start: int | None = None,
          floor: float = 1 / 20, shape: str = "cosine") -> float:
    """The learning rate at ``step`` of ``total``: flat at ``base`` until ``decay_start``
    (default: 70 % of the run), then down to ``base * floor`` at the end, along half a
    cosine (``shape="cosine"``) or at once (``"step"``); the first ``warmup`` steps are
    scaled by a linear ramp (step + 1) / warmup. A short fine-tune from a trained model
    wants ``warmup`` 0: a 500-step ramp is most of its run, and its loss drifts up while
    the rate climbs.

    The trainers' schedules: ``icmcodec.train``: the defaults; task networks: warm-up
    min(200, total / 10), ``decay_start=warmup, floor=0``; prompt sets and Prompt-ICM
    task parts: warm-up 100, ``decay_start=0, floor=0``; the Prompt-ICM feature codec
    and the context model's entropy fit: no warm-up, ``shape="step", floor=0.1`` from
    80 % and 70 % of the run."""
    start = int(total * 0.7) if decay_start is None else decay_start
    lr = base
    if step >= start:
        low = base * floor
        if shape == "step":
            lr = low
        elif shape == "cosine":
            t = (step - start) / max(1, total - start)
            lr = low + (base - low) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        else:
            raise ValueError(f"unknown schedule shape {shape!r} (cosine or step)")
    if step < warmup:
        lr = lr * (step + 1) / warmup
    return lr


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group at ``lr`` times its own ``lr_mult`` (default 1)."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


# ------------------------------------------------------------------ device
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="where to train: auto (the GPU when torch sees one, else the CPU), cpu or cuda")


def pick_device(choice: str | None = "auto", index: int | None = None) -> torch.device:
    """The device a trainer runs on: ``auto`` is CUDA when torch sees it, else the CPU;
    ``cuda`` without a GPU is an error (one line)."""
    choice = choice or "auto"
    if choice not in DEVICE_CHOICES:
        raise SystemExit(f"error: --device {choice}: one of {', '.join(DEVICE_CHOICES)}")
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise SystemExit("error: --device cuda asked for, but torch sees no CUDA device")
    if choice == "cpu" or not cuda:
        return torch.device("cpu")
    device = torch.device("cuda" if index is None else f"cuda:{index}")
    if index is not None:
        torch.cuda.set_device(device)
    # cuDNN autotuning for fixed crop sizes; TF32 for the float transforms (the coding
    # path's symbols never come from these floats, see icmcodec.exact)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return device


def setup_distributed(choice: str | None = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under ``torchrun`` joins the process group: NCCL
    with one GPU per process when training on CUDA, gloo on the CPU otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(choice, local)
    if "WORLD_SIZE" in os.environ:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


# ------------------------------------------------------------------ time
class TimeBudget:
    """Lowers the step count from the measured speed, so a run ends in time.

    Timing starts after ``skip`` steps (cuDNN autotuning and warm-up are slower than
    steady state). Every ``window`` steps after that the mean time per step so far
    gives what still fits (with a margin for checkpoints and validation), and the step
    count is lowered to it, never raised. Refits stop where the learning-rate decay
    begins, so the decay, once started, runs to its end undisturbed. (The first GPU
    run fitted once, early, and steady state turned out 10 % slower than its window:
    it ran out of time in the middle of the decay.) Under torchrun only rank 0 would
    fit, so multi-process runs must pass ``--steps``."""

    def __init__(self, minutes: float, first_step: int, skip: int = 50, window: int = 200,
                 margin: float = 0.95, decay_from: float = 0.7):
        self.end = time.time() + minutes * 60.0
        self.first, self.skip, self.window, self.margin = first_step, skip, window, margin
        self.decay_from = decay_from
        self.t_start = None

    def fit(self, step: int, steps: int) -> int:
        if step == self.first + self.skip:
            self.t_start = time.time()
            return steps
        timed = step - self.first - self.skip
        if self.t_start is None or timed <= 0 or timed % self.window or step >= self.decay_from * steps:
            return steps
        now = time.time()
        per_step = (now - self.t_start) / timed
        fits = step + int((self.end - now) * self.margin / per_step)
        return max(step + 1, min(steps, fits))
