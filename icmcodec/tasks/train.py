"""Training of the clean task networks (``python -m icmcodec.tasks.train``).

One network per task, backbone + head, trained on uncompressed pictures (the papers'
"baseline trained on uncompressed images"); these are the analysis networks every
anchor codec and every icm method is scored with.

    python -m icmcodec.tasks.train --task cls --data ../shared/data/caltech101 --run runs/cls
    python -m icmcodec.tasks.train --task semseg --data ../shared/data/camvid --run runs/semseg \\
        --init runs/cls/last.pt

A run folder holds ``train_config.json``, ``last.pt`` (``--resume`` continues from it;
``--steps`` may be raised), ``log.csv`` and ``val.csv``. ``--init`` copies the backbone
of another run (or of a shipped task network folder). ``--export DIR`` writes the
shipped folder (``config.json`` + float16 ``model.safetensors``) from ``last.pt``.

Augmentation: global tasks take a random resized crop (area 25-100 %, aspect 3/4-4/3)
to ``crop`` pixels and flips; dense tasks take a random scale in ``[0.75, 1.25] * scale``
then a ``crop``-sized window (padded with the ignore value where the picture is
smaller) and flips. Pictures are held in memory as uint8.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmcodec.tasks.datasets import resolve
from icmcodec.tasks.predict import TaskModel, build_net, resize, save_tasknet, to_tensor
from icmcodec.tasks.registry import CAMVID_VOID, task
from icmcodec.training import Run, add_device_arg, lr_at, pick_device, set_lr

DEFAULTS = {
    "cls": dict(crop=128, batch=32, lr=1e-3, steps=1000, input={"resize_short": 146, "crop": 128}),
    "semseg": dict(crop=256, batch=8, lr=6e-4, steps=1000, input={"scale": 0.75}),
    "boundary": dict(crop=256, batch=8, lr=6e-4, steps=1000, input={"scale": 1.0}, head={"detail": True}),
}
FALLBACK = dict(crop=256, batch=8, lr=6e-4, steps=1000, input={"scale": 1.0})
# With an ImageNet-pretrained backbone (EfficientNet-Lite): its native resolution, the
# whole 2x..32x pyramid for boundaries (edges need the fine stages), full-resolution
# dense inputs, and a backbone learning rate at a tenth of the head's so that a few
# hundred labelled pictures adapt the features without washing them out.
PRETRAINED_DEFAULTS = {
    "cls": dict(crop=224, batch=32, lr=1e-3, steps=600, input={"resize_short": 256, "crop": 224},
                backbone_lr=0.1, backbone_args={"out_indices": [1, 2, 3, 4]}),
    "semseg": dict(crop=320, batch=8, lr=1e-3, steps=1500, input={"scale": 1.0}, backbone_lr=0.1,
                   backbone_args={"out_indices": [1, 2, 3, 4]}, head={"dim": 128}),
    "boundary": dict(crop=320, batch=8, lr=1e-3, steps=1500, input={"scale": 1.0}, backbone_lr=0.1,
                     backbone_args={"out_indices": [0, 1, 2, 3, 4]}, head={"dim": 64, "detail": True}),
    # SOD: 200 BSDS pictures (481x321); whole objects, so the 4x..32x stages and a light
    # full-resolution detail branch for their outlines
    "saliency": dict(crop=320, batch=8, lr=1e-3, steps=1000, input={"scale": 1.0}, backbone_lr=0.1,
                     backbone_args={"out_indices": [1, 2, 3, 4]}, head={"dim": 64, "detail": True}),
}


def dense_target(spec, label) -> np.ndarray:
    """The training target of one dense sample as an H x W (x C) float32 array."""
    if spec.name == "boundary":  # the fraction of annotators marking each pixel
        return np.mean([g > 0 for g in resolve(label)], axis=0).astype(np.float32)
    return np.asarray(label, np.float32)


class Sampler:
    """Random augmented batches from samples held in memory."""

    def __init__(self, spec, samples, crop: int, scale: float, seed: int):
        self.spec, self.crop, self.scale = spec, crop, scale
        self.rng = np.random.default_rng(seed)
        self.images = [s.image() for s in samples]
        if spec.kind == "global":
            self.targets = [int(s.label) for s in samples]
        else:
            self.targets = [dense_target(spec, s.label) for s in samples]
        # padding: void for semseg; 0 (no depth, no normal, no edge, background) otherwise
        self.fill = float(CAMVID_VOID) if spec.name == "semseg" else 0.0

    def _global(self, a):
        h, w = a.shape[:2]
        for _ in range(10):
            area = h * w * self.rng.uniform(0.25, 1.0)
            ar = math.exp(self.rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            ch, cw = int(round(math.sqrt(area / ar))), int(round(math.sqrt(area * ar)))
            if ch <= h and cw <= w:
                break
        else:
            ch = cw = min(h, w)
        y, x = self.rng.integers(h - ch + 1), self.rng.integers(w - cw + 1)
        t = resize(to_tensor(a[y:y + ch, x:x + cw]), (self.crop, self.crop))
        return t.flip(-1) if self.rng.random() < 0.5 else t

    def _dense(self, a, tgt):
        x = to_tensor(a)
        t = torch.from_numpy(tgt)
        t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
        s = self.scale * self.rng.uniform(0.75, 1.25)
        h, w = a.shape[:2]
        size = (max(16, round(h * s)), max(16, round(w * s)))
        x = resize(x, size)
        if self.spec.name == "boundary":
            # keep thin edges alive when shrinking: max-pool style resize
            t = F.adaptive_max_pool2d(t[None], size)[0]
        else:
            mode = "nearest" if self.spec.name == "semseg" else "bilinear"
            t = F.interpolate(t[None], size=size, mode=mode)[0]
        c = self.crop
        ph, pw = max(0, c - size[0]), max(0, c - size[1])
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
            t = F.pad(t, (0, pw, 0, ph), value=self.fill)
        y0 = self.rng.integers(x.shape[1] - c + 1)
        x0 = self.rng.integers(x.shape[2] - c + 1)
        x, t = x[:, y0:y0 + c, x0:x0 + c], t[:, y0:y0 + c, x0:x0 + c]
        if self.rng.random() < 0.5:
            x, t = x.flip(-1), t.flip(-1)
            if self.spec.name == "normal":
                t = t * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)  # mirrored x axis
        return x, (t[0] if t.shape[0] == 1 else t)

    def batch(self, n: int):
        idx = self.rng.integers(len(self.images), size=n)
        if self.spec.kind == "global":
            x = torch.stack([self._global(self.images[i]) for i in idx])
            y = torch.tensor([self.targets[i] for i in idx])
        else:
            pairs = [self._dense(self.images[i], self.targets[i]) for i in idx]
            x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        # photometric jitter: brightness and contrast, +-20 %
        b = torch.from_numpy(self.rng.uniform(0.8, 1.2, (n, 1, 1, 1))).float()
        c = torch.from_numpy(self.rng.uniform(0.8, 1.2, (n, 1, 1, 1))).float()
        m = x.mean((1, 2, 3), keepdim=True)
        return ((x - m) * c + m * b).clamp(0, 1), y


def evaluate(model: TaskModel, samples, limit: int | None = None, **metric_kw) -> float:
    """The task metric of ``model`` on labelled samples, through the shipped predict path."""
    metric = model.spec.metric(model.labels, **metric_kw)
    for s in samples[:limit]:
        metric.update(model.predict([s.image()])[0], s.target())
    return metric.value()


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m icmcodec.tasks.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--data", required=True, help="dataset root in the task's folder layout")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--crop", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--drop-path", type=float, default=0.1)
    p.add_argument("--backbone", default="icm_pvt_nano", help="timm model name")
    p.add_argument("--backbone-weights",
                   help="weights of the backbone: a local file for any timm backbone, 'registry' for an "
                        "EfficientNet-Lite's package weights (its default), or 'none' (random)")
    p.add_argument("--backbone-lr", type=float, help="backbone learning rate as a fraction of --lr")
    p.add_argument("--init", help="run checkpoint or task network folder whose backbone to start from")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-limit", type=int, default=None, help="score only the first N val samples")
    p.add_argument("--threads", type=int, default=0)
    add_device_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", metavar="DIR", help="write the shipped folder from RUN/last.pt and exit")
    p.add_argument("--name", help="model name for --export")
    p.add_argument("--default", action="store_true", help="with --export: mark it the task's default network")
    return p.parse_args(argv)


def backbone_weights_arg(args) -> str | None:
    """``--backbone-weights``: a file, ``registry`` (the default for EfficientNet-Lite) or ``none``."""
    from icmcodec.tasks.pretrained import LITE

    w = args.backbone_weights
    if w is None:
        return "registry" if args.backbone in LITE and not args.init else None
    return None if w == "none" else w


def config_for(args, spec, classes) -> dict:
    from icmcodec.tasks.backbone import input_stats

    pretrained = backbone_weights_arg(args) is not None
    table = PRETRAINED_DEFAULTS if pretrained and spec.name in PRETRAINED_DEFAULTS else DEFAULTS
    d = dict(FALLBACK, **table.get(spec.name, {}))
    for k in ("steps", "batch", "crop", "lr", "backbone_lr"):
        if getattr(args, k, None) is not None:
            d[k] = getattr(args, k)
    mean, std = input_stats(args.backbone)
    config = {"kind": "tasknet", "task": spec.name, "backbone": args.backbone, "head": d.get("head", {}),
              "labels": list(classes) if classes else (list(spec.labels) if spec.labels else None),
              "input": dict(d["input"], mean=list(mean), std=list(std)),
              "train": {k: d[k] for k in ("steps", "batch", "crop", "lr")} | {
                  "backbone_lr": d.get("backbone_lr", 1.0), "wd": args.wd, "drop_path": args.drop_path,
                  "data": args.data, "seed": args.seed, "init": args.init,
                  "backbone_weights": backbone_weights_arg(args)}}
    if d.get("backbone_args"):
        config["backbone_args"] = d["backbone_args"]
    return config


def backbone_state(path: str) -> dict:
    p = Path(path)
    if p.is_dir():
        from safetensors.torch import load_file

        state = load_file(str(p / "model.safetensors"))
    else:
        state = torch.load(p, map_location="cpu", weights_only=False)["net"]
    return {k[len("backbone."):]: v.float() for k, v in state.items() if k.startswith("backbone.")}


def export(run: Path, out: Path, name: str | None, default: bool = False) -> None:
    ck = Run(run, create=False).load()
    cfg = dict(ck["config"])
    cfg["name"] = name or out.name
    if default:
        cfg["default"] = True
    cfg["train"]["step"] = ck["step"]
    cfg["clean_metric"] = ck.get("val")
    save_tasknet(ck["net"], cfg, out)
    print(f"exported step {ck['step']} to {out}")


def main(argv=None) -> None:
    args = parse_args(argv)
    run = Path(args.run)
    if args.export:
        export(run, Path(args.export), args.name, args.default)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = task(args.task)
    torch.manual_seed(args.seed)
    classes = None
    if spec.name == "cls":
        from icmcodec.tasks.datasets import image_folder

        train_samples, classes = image_folder(args.data, args.train_split)
        val_samples, val_classes = image_folder(args.data, args.val_split)
        if val_classes != classes:
            raise SystemExit("error: train and val class folders differ")
    else:
        train_samples = spec.dataset(args.data, args.train_split)
        val_samples = spec.dataset(args.data, args.val_split)
    ck = None
    run = Run(args.run)
    if args.resume:
        ck = run.load()
        config = ck["config"]
        if args.steps:
            config["train"]["steps"] = args.steps
    else:
        config = config_for(args, spec, classes)
    tr = config["train"]
    run.write_config(config, indent=1)
    device = pick_device(args.device)
    net = build_net(config, tr["drop_path"], None if ck else tr.get("backbone_weights"))
    if args.init and not ck:
        missing, unexpected = net.backbone.load_state_dict(backbone_state(args.init), strict=False)
        print(f"backbone from {args.init} ({len(missing)} missing, {len(unexpected)} unexpected keys)", file=sys.stderr)
    net.to(device)  # before the optimiser: a resumed state follows its parameters
    groups = []
    for part, mult in ((net.backbone, tr.get("backbone_lr", 1.0)), (net.head, 1.0)):
        ps = list(part.parameters())
        groups += [{"params": [p for p in ps if p.dim() > 1], "weight_decay": args.wd, "lr_mult": mult},
                   {"params": [p for p in ps if p.dim() <= 1], "weight_decay": 0.0, "lr_mult": mult}]
    opt = torch.optim.AdamW(groups, lr=tr["lr"])
    step = 0
    if ck:
        step, _ = run.resume(("net", net), ("opt", opt))
    sampler = Sampler(spec, train_samples, tr["crop"], config["input"].get("scale", 1.0), args.seed + step)
    print(f"{spec.name}: {len(train_samples)} train, {len(val_samples)} val samples; "
          f"{sum(p.numel() for p in net.parameters()):,} parameters", file=sys.stderr)
    log = run.log(["step", "lr", "loss", "seconds"])
    total, warmup = tr["steps"], min(200, tr["steps"] // 10)
    t0, losses = time.time(), []
    best = ck.get("val") if ck else None
    net.train()
    while step < total:
        # warm-up, then cosine to 0
        set_lr(opt, lr_at(step, total, tr["lr"], warmup, decay_start=warmup, floor=0.0))
        x, y = (t.to(device) for t in sampler.batch(tr["batch"]))
        loss = spec.loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 20 == 0 or step == total:
            log.write([step, f"{opt.param_groups[-1]['lr']:.3g}", f"{np.mean(losses):.4f}", f"{time.time() - t0:.0f}"])
            print(f"step {step}/{total} loss {np.mean(losses):.4f} lr {opt.param_groups[-1]['lr']:.2e} "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
            losses = []
        if step % args.val_every == 0 or step == total:
            model = TaskModel(spec, config, net, device=str(device))
            kw = {"thresholds": 25} if spec.name == "boundary" and step != total else {}
            best = {"split": args.val_split, "metric": spec.metric.name,
                    "value": evaluate(model, val_samples, args.val_limit, **kw), "step": step,
                    "samples": len(val_samples[:args.val_limit])}
            net.train()
            with open(run.dir / "val.csv", "a") as f:
                f.write(f"{step},{best['metric']},{best['value']:.4f}\n")
            print(f"val step {step}: {best['metric']} {best['value']:.4f}", file=sys.stderr, flush=True)
            run.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "config": config, "val": best})


if __name__ == "__main__":
    main()
