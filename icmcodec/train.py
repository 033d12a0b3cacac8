"""Training of the base reconstruction codec (``python -m icmcodec.train``).

A run lives in one folder: ``train_config.json`` (everything that defines the run),
``last.pt`` (model, optimisers, step, RNG state: ``--resume`` continues from it),
``log.csv`` (one row per logging interval) and ``val.csv``. Export to the shipped
format is a separate step (``python -m icmcodec.export``) so a checkpoint can be
exported at any time while training continues.

Data: image folders with weights (``--data DIR:WEIGHT``), loaded once into memory,
random crops and flips; each image in a batch draws a random quality level and the
loss is ``lambda[level] * 255**2 * MSE + bpp``.

``--task T`` fine-tunes a codec for a machine task instead: the distortion becomes the
task network's feature distance between x and x_hat (TransTIC's perceptual loss, the
one its prompt sets train on) with ``--task-lambdas`` per level, and every tensor of
the codec may move. Started ``--init`` from a shipped base, this is the "fully
fine-tuned per task" upper bound that a prompt set is compared with; the export is an
ordinary reconstruction model whose pictures are meant for that task's network.

Several GPUs or processes: the same script under ``torchrun``
(``torchrun --nproc_per_node 4 -m icmcodec.train ...``): torch.distributed with NCCL
on GPUs and gloo on the CPU, one process per device, each drawing its own crops;
``--batch`` is per process. Rank 0 alone writes logs and checkpoints.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmcodec import training
from icmcodec.imageio import load_rgb
from icmcodec.registry import METHODS
from icmcodec.training import (CropSampler, CsvLog, Run, TimeBudget, add_device_arg, list_images, lr_at,  # noqa: F401
                               parse_data, rd_bpp, setup_distributed)


def rd_loss(model, x: torch.Tensor, levels: torch.Tensor, lambdas, judge=None) -> dict:
    """The batch's rate-distortion loss. ``judge`` = (frozen task network, lambda per
    level): the distortion is its feature distance instead of 255**2 * MSE."""
    out = model(x, levels)
    bpp = rd_bpp(out, x)
    mse = F.mse_loss(out["x_hat"].clamp(0, 1), x, reduction="none").flatten(1).mean(1)
    if judge is None:
        lam = torch.tensor(lambdas, dtype=x.dtype, device=x.device)[levels]
        loss = (lam * 255.0**2 * mse + bpp).mean()
    else:
        from icmcodec.tasks.features import perceptual_distance, task_features

        net, task_lambdas = judge
        with torch.no_grad():
            ref = task_features(net, x)
        dist = perceptual_distance(net, out["x_hat"].clamp(0, 1), ref)
        loss = (task_lambdas.to(x.device)[levels] * dist + bpp).mean()
    psnr = (-10 * torch.log10(mse.clamp(min=1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": psnr}


@torch.no_grad()
def validate(model, images: list[np.ndarray]) -> list[dict]:
    """Estimated bpp / PSNR per level on held-aside images (rounded latents), for any
    method's trainable model: its forward takes (x, levels) and returns ``x_hat`` and
    the likelihoods; pictures are padded to its total down-sampling (``model.align``,
    64 when it does not say)."""
    model.eval()
    align = int(getattr(model, "align", 64))
    device = next(model.parameters()).device
    rows = []
    for level in range(model.cfg.levels):
        bpps, psnrs = [], []
        for a in images:
            x = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float().div(255).to(device)
            h, w = x.shape[2:]
            xp = F.pad(x, (0, (-w) % align, 0, (-h) % align), mode="replicate")
            out = model(xp, torch.tensor([level], device=device))
            bpps.append(float(rd_bpp(out, h * w)[0]))
            mse = F.mse_loss(out["x_hat"][..., :h, :w].clamp(0, 1), x)
            psnrs.append(float(-10 * torch.log10(mse)))
        rows.append({"level": level, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))})
    model.train()
    return rows


def trainable_of(method: str):
    """The registered ``trainable`` (shipped state -> trainable model) of a method."""
    try:
        return METHODS[method].load("trainable")
    except (KeyError, LookupError):
        raise SystemExit(f"error: --init: method {method} has no trainable model") from None


def init_arch(ckpt_path: str) -> dict:
    """The architecture (the method config's fields) of a checkpoint or shipped model folder."""
    return training.read_arch(ckpt_path)


def init_from(model, ckpt_path: str) -> None:
    """Warm start any method's trainable model from a checkpoint or shipped model folder
    of any method (see :func:`icmcodec.training.init_from`); a folder's tensors are made
    trainable by its method's registered ``trainable``."""
    training.init_from(model, ckpt_path, trainable_of)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m icmcodec.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder (created; holds config, checkpoints, logs)")
    p.add_argument("--method", default="hyperprior",
                   help="the method whose network is trained (a registry name with a trainable model); a warm "
                        "start (--init) from another method's model copies every tensor the two share")
    p.add_argument("--data", action="append", default=[], metavar="DIR[:WEIGHT]",
                   help="training image folder, repeatable, optional sampling weight")
    p.add_argument("--val", metavar="DIR", help="validation image folder (center crops)")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="fit the run into this much wall time: from the measured speed, refitted every "
                   "200 steps until the learning-rate decay begins, --steps is lowered (never raised) to "
                   "what fits and saved in train_config.json, so the decay still ends the run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="crop side, a multiple of 64")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=500, metavar="STEPS",
                   help="linear learning-rate warm-up (default 500; 0 for a short fine-tune from a trained model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    add_device_arg(p)
    p.add_argument("--val-every", type=int, default=2000)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--config", default="{}", help="JSON overrides of HyperpriorConfig fields")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    p.add_argument("--init", metavar="CKPT|MODEL_DIR", help="start from another run's checkpoint or a shipped "
                   "model folder (fresh optimiser); gain vectors are interpolated to the new lambdas in log space")
    p.add_argument("--train-only", metavar="PREFIXES",
                   help="comma-separated parameter name prefixes to train (e.g. log2_gain); everything else "
                        "stays as initialised, and the z prior's quantiles too")
    p.add_argument("--sample-levels", metavar="LEVELS",
                   help="comma-separated quality levels to draw crops for (default: all); with "
                        "--train-only log2_gain, new levels added through --config lambdas are fitted "
                        "while the others keep their gains exactly")
    p.add_argument("--task", help="fine-tune for this machine task: the distortion is its network's feature "
                   "distance between x and x_hat (TransTIC's loss) instead of MSE")
    p.add_argument("--task-model", help="with --task: the task network (default: the task's installed default)")
    p.add_argument("--task-lambdas", metavar="L0,L1,...",
                   help="with --task: lambda per quality level (default 0.5 doubling per level, as the prompt "
                        "trainer's)")
    return p.parse_args(argv)


def task_judge(args: argparse.Namespace, levels: int, device: torch.device):
    """(frozen task network, lambda per level) for ``--task``, or None."""
    if not getattr(args, "task", None):
        return None
    from icmcodec.tasks.predict import find_tasknet

    try:
        net = find_tasknet(args.task, getattr(args, "task_model", None))
    except LookupError as e:
        raise SystemExit(f"error: --task: {e}") from None
    text = getattr(args, "task_lambdas", None)
    try:
        lams = [float(v) for v in text.split(",")] if text else [0.5 * 2**k for k in range(levels)]
    except ValueError:
        raise SystemExit(f"error: --task-lambdas {text}: expected comma-separated numbers") from None
    if len(lams) != levels:
        raise SystemExit(f"error: --task-lambdas: {len(lams)} values for {levels} quality levels")
    return net.net.to(device).eval().requires_grad_(False), torch.tensor(lams)


def trainable_split(model, train_only: str | None) -> tuple[list, list]:
    """(main parameters, auxiliary quantiles) that the optimisers update. With
    ``train_only`` only parameters whose names start with one of its prefixes train;
    the rest are frozen (no gradient is computed for them), quantiles included."""
    named = list(model.named_parameters())
    if train_only:
        prefixes = tuple(x.strip() for x in train_only.split(",") if x.strip())
        keep = [n for n, _ in named if n.startswith(prefixes)]
        if not keep:
            raise SystemExit(f"error: --train-only {train_only}: no parameter name starts with that")
        for n, p in named:
            p.requires_grad_(n in keep)
    main = [p for n, p in named if p.requires_grad and not n.endswith("quantiles")]
    aux = [p for n, p in named if p.requires_grad and n.endswith("quantiles")]
    return main, aux


def level_choices(text: str | None, levels: int) -> np.ndarray:
    if not text:
        return np.arange(levels)
    out = np.asarray(sorted({int(x) for x in text.split(",")}))
    if out.min() < 0 or out.max() >= levels:
        raise SystemExit(f"error: --sample-levels {text}: levels are 0..{levels - 1}")
    return out


def method_classes(method: str):
    """(model class, config class) of a trainable method."""
    if method not in METHODS:
        raise SystemExit(f"error: unknown method {method!r} (one of: {', '.join(METHODS)})")
    try:
        return METHODS[method].load("model"), METHODS[method].load("config")
    except LookupError:
        raise SystemExit(f"error: method {method} has no trainable model") from None


def load_run_config(args: argparse.Namespace, run: Run) -> tuple[argparse.Namespace, object]:
    """Fresh run: write train_config.json. Resume: read it back (``--steps`` may grow;
    ``--device`` is this session's)."""
    if args.resume:
        saved = run.read_config()
        args = argparse.Namespace(**{"method": "hyperprior", **saved["args"], "resume": True, "steps": args.steps,
                                     "device": args.device})
        cfg = method_classes(args.method)[1].from_dict(saved["model"])
    else:
        # a warm start keeps the architecture it starts from (the fields the two
        # methods share); --config still overrides
        cfg_cls = method_classes(args.method)[1]
        fields = cfg_cls().to_dict()
        base = {k: v for k, v in (init_arch(args.init) if args.init else {}).items() if k in fields}
        cfg = cfg_cls.from_dict({**fields, **base, **json.loads(args.config)})
    saved_args = {k: v for k, v in vars(args).items() if k != "resume"}
    run.write_config({"args": saved_args, "model": cfg.to_dict()})
    return args, cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.crop % 64:
        raise SystemExit("error: --crop must be a multiple of 64 (the codec's total down-sampling)")
    if args.time_budget is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit("error: --time-budget is for single-process runs; under torchrun give --steps")
    parse_data(args.data)  # a bad --data spec fails here, before anything starts
    rank, world, device = setup_distributed(args.device)
    lead = rank == 0  # only the first process writes files and prints
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run(args.run, create=lead)
    if lead:
        args, cfg = load_run_config(args, run)
    if world > 1:
        import torch.distributed as dist

        box = [(args, cfg) if lead else None]
        dist.broadcast_object_list(box, src=0)
        args, cfg = box[0]

    random.seed(args.seed + rank)
    torch.manual_seed(args.seed)  # same initial weights on every process
    sampler = CropSampler(parse_data(args.data), args.crop, args.seed + 1000 * rank)
    val_imgs = []
    if args.val and lead:
        for p in list_images(Path(args.val)):
            a = load_rgb(p)
            h, w = a.shape[:2]
            ch, cw = min(h, 512), min(w, 768)
            val_imgs.append(a[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw])

    model = method_classes(args.method)[0](cfg)
    if args.init and not args.resume:
        init_from(model, args.init)
    model.to(device)  # before the optimisers: a resumed state follows its parameters
    main_params, aux_params = trainable_split(model, getattr(args, "train_only", None))
    judge = task_judge(args, cfg.levels, device)
    choices = level_choices(getattr(args, "sample_levels", None), cfg.levels)
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None
    step = 0
    if args.resume and run.has_checkpoint():
        step, _ = run.resume(("model", model), ("opt", opt), ("aux_opt", aux_opt))
        sampler.rng = np.random.default_rng([args.seed, rank, step])
        torch.manual_seed(args.seed + step)
        if lead:
            print(f"resumed at step {step}", file=sys.stderr)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # quantiles get no gradient from the RD loss (only from the aux loss, below)
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                  find_unused_parameters=True)

    log = run.log(["step", "lr", "loss", "bpp", "psnr", "aux", "seconds"]) if lead else None
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "aux": 0.0, "n": 0}
    t0 = time.time()
    budget = TimeBudget(args.time_budget, step) if args.time_budget else None
    model.train()
    while step < args.steps:
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch(args.batch, device)
        levels = torch.from_numpy(choices[sampler.rng.integers(0, len(choices), size=args.batch)]).to(device)
        out = rd_loss(net, x, levels, cfg.lambdas, judge)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        if aux_opt is not None:
            aux = model.aux_loss()
            aux_opt.zero_grad()
            aux.backward()
            if world > 1:
                import torch.distributed as dist

                for p in aux_params:  # keep the quantiles identical on every process
                    dist.all_reduce(p.grad)
                    p.grad /= world
            aux_opt.step()
        else:
            aux = torch.zeros(())
        step += 1
        # summed on the device; read back (a host sync) only when a row is logged
        for k in ("loss", "bpp", "psnr"):
            acc[k] += out[k].detach()
        acc["aux"] += aux.detach()
        acc["n"] += 1
        if budget is not None and lead:
            fitted = budget.fit(step, args.steps)
            if fitted != args.steps:
                args.steps = fitted
                saved = run.read_config()
                saved["args"]["steps"] = fitted
                run.write_config(saved)
                print(f"time budget {args.time_budget:g} min: --steps set to {fitted}", file=sys.stderr, flush=True)
        if lead and (step % 100 == 0 or step == args.steps):
            n = acc.pop("n")
            row = {k: float(v) / n for k, v in acc.items()}
            el = time.time() - t0
            log.write([step, f"{lr:.3g}", f"{row['loss']:.4f}", f"{row['bpp']:.4f}",
                       f"{row['psnr']:.2f}", f"{row['aux']:.1f}", f"{el:.0f}"])
            print(f"step {step}/{args.steps} lr {lr:.2g} loss {row['loss']:.3f} bpp {row['bpp']:.3f} "
                  f"psnr {row['psnr']:.2f} aux {row['aux']:.0f} ({el:.0f}s)", file=sys.stderr, flush=True)
            acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "aux": 0.0, "n": 0}
        if lead and (step % args.ckpt_every == 0 or step == args.steps):
            run.save({"model": model.state_dict(), "opt": opt.state_dict(),
                      "aux_opt": aux_opt.state_dict() if aux_opt else None, "step": step, "config": cfg.to_dict(),
                      "method": args.method})
        if lead and val_imgs and (step % args.val_every == 0 or step == args.steps):
            rows = validate(model, val_imgs)
            with open(run.dir / "val.csv", "a") as f:
                for r in rows:
                    f.write(f"{step},{r['level']},{r['bpp']:.4f},{r['psnr']:.3f}\n")
            print("val " + " ".join(f"L{r['level']}:{r['bpp']:.3f}bpp/{r['psnr']:.2f}dB" for r in rows),
                  file=sys.stderr, flush=True)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
