"""Train one task's MPA path set, the base and the task network frozen
(``python -m icmcodec.methods.mpa.train``; the paper's second stage).

    python -m icmcodec.methods.mpa.train --task semseg --data ../shared/data/camvid --run runs/mpa-semseg
    python -m icmcodec.methods.mpa.train --run runs/mpa-semseg --export MODEL_DIR --name mpa-semseg --strength 1

Each step takes a batch of augmented labelled crops (the clean task network's sampler),
codes every crop with the base at a random real-valued quality and decodes its latents
exactly as ``icm decode`` does (the encoder is frozen, so there is no rate term: the rate
is the base's), draws a strength rho in ``--rho`` and runs g_s with the paths at rho.
The loss is the paper's eq. 8-9 without the rate: the task loss of the clean network on
the decoded picture, plus ``--distortion`` times its MSE to the crop, plus ``--ratio``
times the ratio loss (each wrapped MLP's selected fraction against rho). Only the side
paths and predictors train.

A run folder holds ``train_config.json``, ``last.pt`` (``--resume`` continues; ``--steps``
may grow) and ``log.csv``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from icmcodec import zoo
from icmcodec.methods.mpa.paths import PathSet, ratio_loss, with_paths, wrapped
from icmcodec.tasks.features import perceptual_distance, task_features
from icmcodec.training import Run, add_device_arg, lr_at, pick_device, set_lr


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.mpa.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--model", help="the MPA model (name or folder; default: the installed default)")
    p.add_argument("--task")
    p.add_argument("--task-model", help="task network (default: the task's installed default)")
    p.add_argument("--data", help="the task's dataset root")
    p.add_argument("--split", default="train")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256, help="pixels, a multiple of 64")
    p.add_argument("--scale", type=float, default=None, help="dense tasks: picture scale (default: the network's)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=64, help="side path width")
    p.add_argument("--rho", default="0.2,1.0", help="strength range drawn per step")
    p.add_argument("--distortion", type=float, default=10.0, help="weight of the MSE to the crop")
    p.add_argument("--ratio", type=float, default=2.0, help="weight of the ratio loss")
    p.add_argument("--features", type=float, default=0.0,
                   help="weight of the feature distance: the task network's features on the decoded crop against "
                        "those on the crop (TransTIC's perceptual loss), beside the label loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    add_device_arg(p)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", metavar="DIR", help="write the path set folder from RUN/last.pt and exit")
    p.add_argument("--name", help="path set name for --export")
    p.add_argument("--strength", type=float, help="with --export: the strength decoding uses by default")
    p.add_argument("--default", action="store_true", help="with --export: the task's default set for this model")
    return p.parse_args(argv)


def load_mpa(name: str | None, device):
    """The MPA codec (coding-time, frozen) by name or folder, or the installed default."""
    from icmcodec.methods.mpa.codec import MpaCodec

    try:
        entry = zoo.find(name) if name else zoo.find(method="mpa")
    except zoo.ModelNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    if entry.config.get("method") != "mpa":
        raise SystemExit(f"error: {entry.name} is a {entry.config.get('method')} model, not an MPA model")
    config, state, h = zoo.load_state(entry)
    codec = MpaCodec(config, state, h, device)
    for m in (codec.g_a, codec.g_s, codec.h_a):
        m.requires_grad_(False)
    return codec


def decoded_latents(codec, x: torch.Tensor, qualities: np.ndarray) -> torch.Tensor:
    """B x 3 x S x S crops in [0, 1] -> the latents ``icm decode`` gives g_s for them at
    ``qualities`` (the base's encode, its bytes, their exact decode)."""
    rgbs = [np.ascontiguousarray((c.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)) for c in x]
    out = []
    for an, q in zip(codec.analyse_batch(rgbs), qualities):
        enc = codec.code(an, float(q))
        out.append(codec.y_hat(enc.chunks[0].data, enc.chunks[1].data, an.coded_size, float(q)))
    return torch.from_numpy(np.stack(out))


def export(run: Path, out: Path, name: str | None, strength: float | None, default: bool) -> None:
    from icmcodec.methods.mpa.export import write_paths

    ck = Run(run, create=False).load()
    cfg = ck["config"]
    codec = load_mpa(cfg["model"], "cpu")
    if codec.model_hash.hex() != cfg["model_hash"]:
        raise SystemExit(f"error: the installed {cfg['model']} is not the MPA model this run trained on")
    paths = PathSet(cfg["paths"], codec.arch.N, cfg["hidden"])
    paths.load_state_dict(ck["paths"])
    s = strength if strength is not None else float(cfg["rho"].split(",")[1])
    h = write_paths(paths, out, name=name or out.name, task=cfg["task"], mpa_hash=codec.model_hash,
                    tasknet_hash=bytes.fromhex(cfg["tasknet_hash"]), hidden=cfg["hidden"], strength=s,
                    default=default, train_step=ck["step"], train={k: cfg[k] for k in (
                        "data", "steps", "batch", "crop", "lr", "rho", "distortion", "ratio", "features", "seed") if k in cfg})
    print(f"exported step {ck['step']} to {out} (hash {h.hex()}, strength {s:g})")


def main(argv=None) -> None:
    from icmcodec.methods.mpa.paths import mlp_names
    from icmcodec.tasks.predict import find_tasknet
    from icmcodec.tasks.registry import task as task_spec
    from icmcodec.tasks.train import Sampler

    a = parse_args(argv)
    if a.export:
        export(Path(a.run), Path(a.export), a.name, a.strength, a.default)
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    run = Run(a.run)
    if a.resume:
        cfg = run.read_config()
        cfg["steps"] = a.steps if a.steps != 600 else cfg["steps"]
    else:
        if not (a.task and a.data):
            raise SystemExit("error: --task and --data are needed (or --resume / --export)")
        if a.task == "recon":
            raise SystemExit("error: recon is the base's main path; path sets are for machine tasks")
        cfg = {k: getattr(a, k) for k in ("task", "task_model", "data", "split", "steps", "batch", "crop", "scale",
                                          "lr", "hidden", "rho", "distortion", "ratio", "features", "seed")}
        cfg["model"] = a.model
    if cfg["crop"] % 64:
        raise SystemExit(f"error: --crop {cfg['crop']}: a multiple of 64")
    codec = load_mpa(cfg["model"], device)
    try:
        net = find_tasknet(cfg["task"], cfg["task_model"])
    except LookupError as e:
        raise SystemExit(f"error: --task-model: {e}") from None
    spec = task_spec(cfg["task"])
    names = mlp_names(codec.g_s)
    cfg.update(model=cfg["model"] or codec.config["name"], model_hash=codec.model_hash.hex(),
               tasknet_hash=net.hash.hex(), paths=names)
    run.write_config(cfg, indent=1)
    samples = spec.dataset(cfg["data"], cfg["split"])
    if not samples:
        raise SystemExit(f"error: no labelled pictures in {cfg['data']} ({cfg['split']})")
    scale = cfg["scale"] if cfg["scale"] is not None else float(net.config.get("input", {}).get("scale", 1.0))
    model = net.net.eval().requires_grad_(False).to(device)
    torch.manual_seed(cfg["seed"])
    paths = PathSet(names, codec.arch.N, cfg["hidden"]).to(device)
    opt = torch.optim.Adam(paths.parameters(), lr=cfg["lr"])
    step, _ = run.resume(("paths", paths), ("opt", opt))
    sampler = Sampler(spec, samples, cfg["crop"], scale, cfg["seed"] + step)
    rng = np.random.default_rng([cfg["seed"], step])
    lo_q, hi_q = codec.quality_range
    rho_lo, rho_hi = (float(v) for v in cfg["rho"].split(","))
    g = with_paths(codec.g_s, paths, 1.0)  # one wrapped copy; rho is set per step
    log = run.log(["step", "lr", "rho", "loss", "task", "mse", "ratio", "selected", "seconds"])
    n = sum(p.numel() for p in paths.parameters())
    base_n = sum(p.numel() for m in (codec.g_a, codec.g_s, codec.h_a) for p in m.parameters())
    print(f"mpa {cfg['task']}: {n:,} path parameters ({100 * n / base_n:.2f} % of the base's {base_n:,}), "
          f"{len(samples)} pictures, on {device}", file=sys.stderr)
    t0, acc, k = time.time(), np.zeros(5), 0
    while step < cfg["steps"]:
        lr = lr_at(step, cfg["steps"], cfg["lr"], warmup=50, decay_start=0, floor=0.05)
        set_lr(opt, lr)
        x, y = sampler.batch(cfg["batch"])
        q = rng.uniform(lo_q, hi_q, len(x))
        with torch.no_grad():
            y_hat = decoded_latents(codec, x, q).to(device)
        x, y = x.to(device), y.to(device)
        rho = float(rng.uniform(rho_lo, rho_hi))
        for m in wrapped(g):
            m.rho = rho
        x_hat = g(y_hat)[..., :x.shape[2], :x.shape[3]].clamp(0, 1)
        l_task = spec.loss(model(x_hat).float(), y)
        mse = F.mse_loss(x_hat, x)
        l_ratio = ratio_loss(g, rho)
        loss = l_task + cfg["distortion"] * mse + cfg["ratio"] * l_ratio
        if cfg.get("features"):
            with torch.no_grad():
                ref = task_features(model, x)
            loss = loss + cfg["features"] * perceptual_distance(model, x_hat, ref).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(paths.parameters(), 1.0)
        opt.step()
        step += 1
        sel = float(np.mean([float(m.last_mask.detach().float().mean()) for m in wrapped(g)]))
        acc += [loss.item(), l_task.item(), mse.item(), l_ratio.item(), sel]
        k += 1
        if step % 10 == 0 or step == cfg["steps"]:
            r = acc / k
            log.write([step, f"{lr:.3g}", f"{rho:.2f}", f"{r[0]:.4f}", f"{r[1]:.4f}", f"{r[2]:.5f}", f"{r[3]:.4f}",
                       f"{r[4]:.3f}", f"{time.time() - t0:.0f}"])
            print(f"step {step}/{cfg['steps']} loss {r[0]:.4f} task {r[1]:.4f} mse {r[2]:.5f} ratio {r[3]:.4f} "
                  f"selected {r[4]:.3f} ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
            acc[:], k = 0, 0
        if step % a.ckpt_every == 0 or step == cfg["steps"]:
            run.save({"paths": paths.state_dict(), "opt": opt.state_dict(), "step": step, "config": cfg})


if __name__ == "__main__":
    main()
