"""Fit the context model's entropy networks on cached latents, transforms frozen.

    python -m icmcodec.methods.context.fit_entropy --init icmcodec/zoo/models/hp-base \\
        --data ../shared/data/clean:4 --data ../shared/data/bsds500/images/train:1 \\
        --val ../shared/data/photos --run runs/ctx-fit --steps 6000

A context model changes only how the latent is *coded*; warm-started from a trained
hyperprior (same g_a, g_s, h_a, h_s, gains), most of what it can gain is in its context
and parameter networks. Those are small and work at 1/16 of the picture's resolution,
so this trainer runs g_a once over a set of random crops, keeps their latents in
memory, and then trains only the context networks (``ctx.*``) on the rate of y, at
random quality levels, thousands of steps a minute on a CPU. The transforms, the hyper
networks and the gains stay as they are, so distortion moves only through the rounding
offsets (the means), which the rate-distortion benchmark measures on real files.

Full joint training (``python -m icmcodec.train --method context --init ...``) is the
same model and the better run where a GPU is at hand. The run folder holds
``train_config.json``, ``last.pt`` (``--resume``), ``log.csv`` and ``val.csv``;
``python -m icmcodec.export RUN/last.pt DIR --name NAME`` ships it.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from icmcodec.coding.context_config import ContextConfig
from icmcodec.coding.context_net import GainedContext
from icmcodec.training import CropSampler, Run, init_from, list_images, lr_at, parse_data, read_arch, set_lr


def trainable_of(method: str):
    """What ``--init`` reads: a hyperprior or a context model folder."""
    if method == "context":
        from icmcodec.coding.export import context_from_state as trainable_from_state
    elif method == "hyperprior":
        from icmcodec.coding.export import trainable_from_state
    else:
        raise SystemExit(f"error: --init: a {method} model; this fit starts from a hyperprior or a context model")
    return trainable_from_state


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.context.fit_entropy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="a hyperprior (or context) model folder or checkpoint")
    p.add_argument("--data", action="append", default=[], metavar="DIR[:WEIGHT]")
    p.add_argument("--val", help="folder of validation photos (768x512 centre crops)")
    p.add_argument("--run", required=True)
    p.add_argument("--crops", type=int, default=1200, help="random crops whose latents are cached")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--slices", default="16,16,32,64,64")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


@torch.no_grad()
def cache_latents(model, sampler, n: int, batch: int = 8) -> torch.Tensor:
    ys = []
    t0 = time.time()
    for i in range(0, n, batch):
        x = sampler.batch_u8(min(batch, n - i)).float().div_(255)
        ys.append(model.g_a(x))
        if (i // batch) % 25 == 0:
            print(f"latents {i + batch}/{n} ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    return torch.cat(ys)


@torch.no_grad()
def rate(model, ys: list[torch.Tensor], levels: int) -> list[float]:
    """Mean bits per latent position-group (y and z) per level, rounded latents."""
    model.eval()
    out = []
    for level in range(levels):
        bits = 0.0
        for y in ys:
            r = model.entropy(y, torch.tensor([level]))
            bits += float(-torch.log2(r["y_lik"]).sum() - torch.log2(r["z_lik"]).sum())
        out.append(bits)
    model.train()
    return out


def main(argv=None) -> None:
    from icmcodec.imageio import load_rgb

    a = parse_args(argv)
    sources = parse_data(a.data)
    run = Run(a.run)
    torch.manual_seed(a.seed)
    base = read_arch(a.init)
    fields = ContextConfig().to_dict()
    cfg = ContextConfig.from_dict({**fields, **{k: v for k, v in base.items() if k in fields},
                                   "slices": [int(s) for s in a.slices.split(",")], "hidden": a.hidden})
    model = GainedContext(cfg)
    init_from(model, a.init, trainable_of)
    step, ck = 0, None
    if a.resume:
        ck = run.load()
        model.load_state_dict(ck["model"])
        step = ck["step"]
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("ctx."))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    if a.resume:
        opt.load_state_dict(ck["opt"])
    run.write_config({"args": vars(a), "model": cfg.to_dict()})
    sampler = CropSampler(sources, a.crop, a.seed + step)
    cache = run.dir / "latents.pt"  # the frozen g_a's output: computed once per run folder
    if cache.exists():
        ys = torch.load(cache)
    else:
        ys = cache_latents(model, sampler, a.crops)
        torch.save(ys, cache)
    val = []
    if a.val:
        for p in list_images(Path(a.val)):
            img = load_rgb(p)
            h, w = img.shape[:2]
            ch, cw = min(h, 512) // 64 * 64, min(w, 768) // 64 * 64
            c = img[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
            with torch.no_grad():
                val.append(model.g_a(torch.from_numpy(c.copy()).permute(2, 0, 1)[None].float().div(255)))
        start = rate(model, val, cfg.levels)
    rng = np.random.default_rng(a.seed + step)
    log = run.log(["step", "lr", "y_bpp", "seconds"])
    t0, acc = time.time(), []
    while step < a.steps:
        # flat, a tenth for the last 30 %
        lr = lr_at(step, a.steps, a.lr, warmup=0, decay_start=math.ceil(0.7 * a.steps), floor=0.1, shape="step")
        set_lr(opt, lr)
        i = rng.integers(len(ys), size=a.batch)
        y = ys[i]
        if rng.random() < 0.5:
            y = y.flip(-1)
        levels = torch.from_numpy(rng.integers(0, cfg.levels, size=a.batch))
        r = model.entropy(y, levels)
        loss = -torch.log2(r["y_lik"]).sum() / y.shape[0] / (y.shape[-1] * y.shape[-2] * 256)  # bits per pixel
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        acc.append(float(loss.detach()))
        if step % 100 == 0:
            log.write([step, f"{lr:.3g}", f"{np.mean(acc):.5f}", f"{time.time() - t0:.0f}"])
            print(f"step {step}/{a.steps} y bpp {np.mean(acc):.4f} ({time.time() - t0:.0f}s)", file=sys.stderr,
                  flush=True)
            acc = []
        if step % a.val_every == 0 or step == a.steps:
            if val:
                now = rate(model, val, cfg.levels)
                rel = [f"L{k}:{100 * (n / s - 1):+.2f}%" for k, (n, s) in enumerate(zip(now, start))]
                with open(run.dir / "val.csv", "a") as f:
                    f.write(f"{step}," + ",".join(f"{n / s - 1:.5f}" for n, s in zip(now, start)) + "\n")
                print("val bits vs the start: " + " ".join(rel), file=sys.stderr, flush=True)
            run.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                      "config": cfg.to_dict(), "method": "context"})


if __name__ == "__main__":
    main()
