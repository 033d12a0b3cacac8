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
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


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
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", metavar="DIR", help="write the prompt set folder from RUN/last.pt and exit")
    p.add_argument("--name", help="prompt set name for --export")
    p.add_argument("--default", action="store_true", help="with --export: the task's default set for this base")
    return p.parse_args(argv)


def task_features(net, x: torch.Tensor) -> list[torch.Tensor]:
    """The task network's backbone features of pictures in [0, 1] (its own input scaling)."""
    return net.backbone((x - net.mean) / net.std)


def perceptual_distance(net, x_hat: torch.Tensor, ref: list[torch.Tensor]) -> torch.Tensor:
    """Per picture: mean over stages of |f(x_hat) - f(x)|^2 / |f(x)|^2."""
    out = []
    for f, r in zip(task_features(net, x_hat), ref):
        out.append((f - r).square().flatten(1).sum(1) / r.square().flatten(1).sum(1).clamp(min=1e-6))
    return torch.stack(out).mean(0)


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

    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
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
    from icmcodec import pipeline
    from icmcodec.methods.transtic.model import TransTIC
    from icmcodec.train import CropSampler, CsvLog, rd_bpp

    args = parse_args(argv)
    run = Path(args.run)
    if args.export:
        export(run, Path(args.export), args.name, args.default)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        cfg = json.loads((run / "train_config.json").read_text())
        cfg["steps"] = args.steps if args.steps else cfg["steps"]
    else:
        if not (args.base and args.task and args.data):
            raise SystemExit("error: --base, --task and --data are needed (or --resume / --export)")
        cfg = {"base": args.base, "task": args.task, "task_model": args.task_model, "data": args.data,
               "steps": args.steps, "batch": args.batch, "crop": args.crop, "lr": args.lr, "seed": args.seed,
               "encoder": not args.no_encoder, "decoder": not args.no_decoder, "lambdas": args.lambdas}
    if cfg["crop"] % 64:
        raise SystemExit(f"error: --crop {cfg['crop']}: must be a multiple of 64 (TIC's total down-sampling)")
    tic, _, base_hash = load_base(cfg["base"])
    net = pipeline.load_tasknet(cfg["task"], cfg["task_model"], device="cpu")
    levels = tic.cfg.levels
    lambdas = ([float(v) for v in cfg["lambdas"].split(",")] if isinstance(cfg["lambdas"], str)
               else cfg["lambdas"] or [0.5 * 2 ** k for k in range(levels)])
    if len(lambdas) != levels:
        raise SystemExit(f"error: {len(lambdas)} lambdas for {levels} quality levels")
    cfg.update(lambdas=lambdas, base_hash=base_hash.hex(), tasknet_hash=net.hash.hex())
    run.mkdir(parents=True, exist_ok=True)
    (run / "train_config.json").write_text(json.dumps(cfg, indent=1) + "\n")

    tic.requires_grad_(False)
    model = net.net.eval().requires_grad_(False)
    torch.manual_seed(cfg["seed"])
    ps = TransTIC(tic.cfg, tic)
    opt = torch.optim.Adam(ps.parameters(), lr=cfg["lr"])
    step = 0
    if args.resume:
        ck = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
        ps.load_state_dict(ck["prompts"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    sources = [(d.partition(":")[0], float(d.partition(":")[2] or 1.0)) for d in cfg["data"]]
    sampler = CropSampler(sources, cfg["crop"], cfg["seed"] + step)
    rng = np.random.default_rng([cfg["seed"], step])
    lam = torch.tensor(lambdas)
    log = CsvLog(run / "log.csv", ["step", "lr", "loss", "bpp", "distance", "seconds"])
    t0, acc = time.time(), np.zeros(3)
    print(f"transtic {cfg['task']}: {sum(p.numel() for p in ps.parameters()):,} prompt parameters on "
          f"{cfg['base']} ({base_hash.hex()[:12]}), task network {net.config.get('name')}", file=sys.stderr)
    # TIC in training mode: noise for the rate and the straight-through synthesis, as its
    # own training had; its weights are frozen, so only the prompts learn
    tic.train(True)
    while step < cfg["steps"]:
        lr = cfg["lr"] * (0.5 * (1 + math.cos(math.pi * step / cfg["steps"])) if step > 100 else (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch_u8(cfg["batch"]).float().div_(255)
        lv = torch.from_numpy(rng.integers(0, levels, cfg["batch"]))
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
            torch.save({"prompts": ps.state_dict(), "opt": opt.state_dict(), "step": step, "config": cfg},
                       run / "last.tmp")
            (run / "last.tmp").replace(run / "last.pt")


if __name__ == "__main__":
    main()
