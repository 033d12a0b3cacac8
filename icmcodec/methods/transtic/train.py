"""Train a TransTIC prompt set for one task, TIC frozen (``python -m icmcodec.methods.transtic.train``).

    python -m icmcodec.methods.transtic.train --base tic-hybrid-base --task semseg \\
        --data ../shared/data/camvid/train --run runs/tt-semseg --steps 2000
    python -m icmcodec.methods.transtic.train --run runs/tt-semseg --export MODEL_DIR --name tt-semseg --default

The loss is TransTIC's (eq. 3): ``R + lambda[level] * D`` with R the estimated bits per
pixel of y and z and D the perceptual distance of the task: the frozen task network's
backbone features on x and on x_hat, each stage's squared error relative to the
stage's energy on x, averaged over stages. Every crop draws a quality level of the
variable-rate base, so one prompt set serves every rate. Only the prompt generator and
the task prompts train; TIC and the task network are frozen (no gradient reaches their
weights). ``--no-encoder`` / ``--no-decoder`` train one side only (the ablations).

A run folder holds ``train_config.json``, ``last.pt`` (``--resume`` continues; ``--steps``
may grow) and ``log.csv``. ``--export DIR`` writes the prompt set folder, named in every
file coded with it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from icmcodec.tasks.features import perceptual_distance, task_features
from icmcodec.training import CropSampler, Run, add_device_arg, lr_at, parse_data, pick_device, rd_bpp


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.transtic.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--base", help="the TIC model (name or folder)")
    p.add_argument("--task")
    p.add_argument("--task-model", help="task network (default: the task's installed default)")
    p.add_argument("--data", action="append", default=[], metavar="DIR[:WEIGHT]")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lambdas", help="comma-separated lambda per quality level (default: 0.5 doubling per level)")
    p.add_argument("--no-encoder", action="store_true", help="no instance prompts (decoder prompts only)")
    p.add_argument("--no-decoder", action="store_true", help="no task prompts (encoder prompts only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    add_device_arg(p)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", metavar="DIR", help="write the prompt set folder from RUN/last.pt and exit")
    p.add_argument("--name", help="prompt set name for --export")
    p.add_argument("--default", action="store_true", help="with --export: the task's default set for this base")
    return p.parse_args(argv)


def load_base(name: str):
    """(trainable TIC, its shipped config, its hash) of a TIC model name or folder."""
    from icmcodec import zoo
    from icmcodec.methods.transtic.export import trainable_from_state

    entry = zoo.find(name, task="recon")
    if entry.config.get("method") != "transtic":
        raise SystemExit(f"error: {name} is a {entry.config.get('method')} model, not a TIC base")
    config, state, h = zoo.load_state(entry)
    return trainable_from_state(config, state), config, h


def export(run: Path, out: Path, name: str | None, default: bool) -> None:
    from icmcodec.methods.transtic.export import write_adapter
    from icmcodec.methods.transtic.model import TransTIC

    ck = Run(run, create=False).load()
    cfg = ck["config"]
    tic, _, base_hash = load_base(cfg["base"])
    if base_hash.hex() != cfg["base_hash"]:
        raise SystemExit(f"error: the installed {cfg['base']} is not the base this run trained on")
    ps = TransTIC(tic.cfg, tic)
    ps.load_state_dict(ck["prompts"])
    h = write_adapter(ps, out, name=name or out.name, task=cfg["task"], base_hash=base_hash,
                         tasknet_hash=bytes.fromhex(cfg["tasknet_hash"]), encoder=cfg["encoder"],
                         decoder=cfg["decoder"], default=default, train_step=ck["step"], lambdas=cfg["lambdas"])
    print(f"exported step {ck['step']} to {out} (hash {h.hex()})")


def main(argv=None) -> None:
    from icmcodec.methods.transtic.model import TransTIC
    from icmcodec.tasks.predict import find_tasknet

    args = parse_args(argv)
    if args.export:
        export(Path(args.run), Path(args.export), args.name, args.default)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    run = Run(args.run)
    if args.resume:
        cfg = run.read_config()
        cfg["steps"] = args.steps if args.steps else cfg["steps"]
    else:
        if not (args.base and args.task and args.data):
            raise SystemExit("error: --base, --task and --data are needed (or --resume / --export)")
        parse_data(args.data)
        cfg = {"base": args.base, "task": args.task, "task_model": args.task_model, "data": args.data,
               "steps": args.steps, "batch": args.batch, "crop": args.crop, "lr": args.lr, "seed": args.seed,
               "encoder": not args.no_encoder, "decoder": not args.no_decoder, "lambdas": args.lambdas}
    if cfg["crop"] % 64:
        raise SystemExit(f"error: --crop {cfg['crop']}: must be a multiple of 64 (TIC's total down-sampling)")
    tic, _, base_hash = load_base(cfg["base"])
    try:
        net = find_tasknet(cfg["task"], cfg["task_model"])
    except LookupError as e:
        raise SystemExit(f"error: --task-model: {e}") from None
    levels = tic.cfg.levels
    lambdas = ([float(v) for v in cfg["lambdas"].split(",")] if isinstance(cfg["lambdas"], str)
               else cfg["lambdas"] or [0.5 * 2 ** k for k in range(levels)])
    if len(lambdas) != levels:
        raise SystemExit(f"error: {len(lambdas)} lambdas for {levels} quality levels")
    cfg.update(lambdas=lambdas, base_hash=base_hash.hex(), tasknet_hash=net.hash.hex())
    run.write_config(cfg, indent=1)

    tic.requires_grad_(False).to(device)
    model = net.net.eval().requires_grad_(False).to(device)
    torch.manual_seed(cfg["seed"])
    ps = TransTIC(tic.cfg, tic).to(device)
    opt = torch.optim.Adam(ps.parameters(), lr=cfg["lr"])
    step = 0
    if args.resume:
        step, _ = run.resume(("prompts", ps), ("opt", opt))
    sampler = CropSampler(parse_data(cfg["data"]), cfg["crop"], cfg["seed"] + step)
    rng = np.random.default_rng([cfg["seed"], step])
    lam = torch.tensor(lambdas, device=device)
    log = run.log(["step", "lr", "loss", "bpp", "distance", "seconds"])
    t0, acc = time.time(), np.zeros(3)
    print(f"transtic {cfg['task']}: {sum(p.numel() for p in ps.parameters()):,} prompt parameters on "
          f"{cfg['base']} ({base_hash.hex()[:12]}), task network {net.config.get('name')}", file=sys.stderr)
    # TIC in training mode: noise for the rate and the straight-through synthesis, as its
    # own training had; its weights are frozen, so only the prompts learn
    tic.train(True)
    while step < cfg["steps"]:
        # warm-up over 100 steps, cosine from the start to 0
        lr = lr_at(step, cfg["steps"], cfg["lr"], warmup=100, decay_start=0, floor=0.0)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch(cfg["batch"], device)
        lv = torch.from_numpy(rng.integers(0, levels, cfg["batch"])).to(device)
        with torch.no_grad():
            ref = task_features(model, x)
        out = ps(tic, x, lv, encoder=cfg["encoder"], decoder=cfg["decoder"])
        bpp = rd_bpp(out, x)
        dist = perceptual_distance(model, out["x_hat"].clamp(0, 1), ref)
        loss = (bpp + lam[lv] * dist).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ps.parameters(), 1.0)
        opt.step()
        step += 1
        acc += [float(loss.detach()), float(bpp.detach().mean()), float(dist.detach().mean())]
        if step % 20 == 0 or step == cfg["steps"]:
            n = 20 if step % 20 == 0 else step % 20
            row = acc / n
            log.write([step, f"{lr:.3g}", f"{row[0]:.4f}", f"{row[1]:.4f}", f"{row[2]:.4f}", f"{time.time() - t0:.0f}"])
            print(f"step {step}/{cfg['steps']} loss {row[0]:.4f} bpp {row[1]:.4f} distance {row[2]:.4f} "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
            acc[:] = 0
        if step % args.ckpt_every == 0 or step == cfg["steps"]:
            run.save({"prompts": ps.state_dict(), "opt": opt.state_dict(), "step": step, "config": cfg})


if __name__ == "__main__":
    main()
