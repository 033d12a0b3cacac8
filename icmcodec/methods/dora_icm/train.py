"""Train a DoRA-ICM task set: ``python -m icmcodec.methods.dora_icm.train``.

The backbone stays frozen; the DoRA adapters, the preliminary decoder, the entropy model
and the decoder train together on

    L = R + lambda_q * (L_task(decoder output) + w_pre * L_task(preliminary prediction))

with one quality level q drawn per batch (its lambda from the config), R the estimated
bits per pixel (:func:`icmcodec.training.rd_bpp`) and L_task the task's own loss
(:mod:`icmcodec.tasks.registry`). Batches come from the task's labelled training split,
augmented as the task networks are (flips, scale jitter, crops, photometric jitter),
prepared in background threads. On the GPU when torch sees one (bf16 autocast,
channels-last); a run resumes from ``RUN/last.pt``.

    python -m icmcodec.methods.dora_icm.train --task semseg --data ../shared/data/camvid --run runs/dora-semseg
    python -m icmcodec.methods.dora_icm.train --run runs/dora-semseg --resume
    python -m icmcodec.methods.dora_icm.export runs/dora-semseg/last.pt MODEL_DIR --name dora-lite0-semseg
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time

import numpy as np
import torch

from icmcodec import training
from icmcodec.methods.dora_icm.model import DoraIcm, DoraIcmConfig, build_backbone


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.dora_icm.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder (config, last.pt, log.csv)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run with its saved config")
    p.add_argument("--task", help="semseg, boundary, saliency, depth, normal")
    p.add_argument("--data", help="the task's dataset root (its registry loader's layout)")
    p.add_argument("--split", default="train")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=320, help="training crop (a multiple of 64)")
    p.add_argument("--scale", type=float, default=1.0, help="picture scale before the crop (x0.75..1.25 jitter)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--prelim-weight", type=float, default=0.5, help="weight of the preliminary prediction's loss")
    p.add_argument("--config", default="{}", help="JSON overrides of the model config (rank, lambdas, dims, ...)")
    p.add_argument("--no-adapters", action="store_true", help="ablation: the fixed backbone, no DoRA")
    p.add_argument("--backbone-weights", default="registry",
                   help="backbone weights: 'registry' (the installed package) or a local file")
    p.add_argument("--time-budget", type=float, default=None, help="minutes: lower --steps to end in time")
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=3, help="batch-preparing threads")
    p.add_argument("--seed", type=int, default=0)
    training.add_device_arg(p)
    return p.parse_args(argv)


class Prefetch:
    """Batches from ``threads`` task samplers (one each, own seed) through a queue."""

    def __init__(self, spec, samples, crop, scale, batch, seed, threads):
        from icmcodec.tasks.train import Sampler

        self.q: queue.Queue = queue.Queue(maxsize=2 * threads)
        self.stop = False
        self.samplers = [Sampler(spec, samples, crop, scale, seed * 100 + i) for i in range(max(1, threads))]
        for s in self.samplers:
            threading.Thread(target=self._fill, args=(s, batch), daemon=True).start()

    def _fill(self, sampler, batch):
        while not self.stop:
            self.q.put(sampler.batch(batch))

    def next(self):
        return self.q.get()


def main(argv=None) -> None:
    a = parse_args(argv)
    from icmcodec.tasks.backbone import input_stats
    from icmcodec.tasks.registry import task as task_spec

    run = training.Run(a.run)
    if a.resume:
        saved = run.read_config()
        for k in ("task", "data", "split", "crop", "scale", "batch", "lr", "warmup", "prelim_weight", "no_adapters",
                  "seed"):
            setattr(a, k, saved[k])
        a.steps = saved["steps"] if a.steps == 6000 else a.steps
        cfg = DoraIcmConfig.from_dict(saved["model"])
    else:
        if not a.task or not a.data:
            raise SystemExit("error: --task and --data are needed for a new run")
        spec = task_spec(a.task)
        if spec.kind != "dense":
            raise SystemExit(f"error: DoRA-ICM's decoder gives dense outputs; {a.task} is not a dense task")
        if a.crop % 64:
            raise SystemExit(f"error: --crop {a.crop}: a multiple of 64")
        cfg = DoraIcmConfig.from_dict({**DoraIcmConfig(task=a.task, classes=spec.out_channels).to_dict(),
                                       **json.loads(a.config)})
        run.write_config({**{k: v for k, v in vars(a).items() if k not in ("config", "resume", "device")},
                          "model": cfg.to_dict()})
    spec = task_spec(cfg.task)
    device = training.pick_device(a.device)
    torch.manual_seed(a.seed)
    model = DoraIcm(cfg, build_backbone(cfg, a.backbone_weights), *input_stats(cfg.backbone))
    if not a.no_adapters:
        model.encoder.adapt()
    model.to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    aux_opt = torch.optim.Adam(aux, lr=1e-3)
    step, _ = run.resume(("model", model), ("opt", opt), ("aux_opt", aux_opt))
    samples = spec.dataset(a.data, a.split)
    if not samples:
        raise SystemExit(f"error: no labelled pictures in {a.data} ({a.split})")
    feed = Prefetch(spec, samples, a.crop, a.scale, a.batch, a.seed + step, a.threads)
    log = run.log(["step", "level", "loss", "bpp", "task", "prelim", "lr", "s_per_step"])
    budget = training.TimeBudget(a.time_budget, step) if a.time_budget else None
    rng = np.random.default_rng(a.seed + step)
    lambdas = torch.tensor(cfg.lambdas)
    n_tr = sum(p.numel() for p in params)
    print(f"dora-icm {cfg.task}: {n_tr:,} trainable parameters, {len(samples)} pictures, on {device}", file=sys.stderr)
    steps = a.steps
    t0 = time.time()
    model.train()

    def save(at: int) -> None:
        run.save({"step": at, "method": "dora-icm", "config": cfg.to_dict(), "model": model.state_dict(),
                  "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
                  "trainable": {k: v.detach().cpu() for k, v in model.trainable_state().items()}})

    while step < steps:
        if budget:
            steps = budget.fit(step, steps)
        lr = training.lr_at(step, steps, a.lr, a.warmup, decay_start=int(steps * 0.6), floor=0.02)
        training.set_lr(opt, lr)
        x, y = feed.next()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        level = int(rng.integers(cfg.levels))
        levels = torch.full((x.shape[0],), level, device=device, dtype=torch.long)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(x, levels)
        bpp = training.rd_bpp({k: out[k].float() for k in ("y_lik", "z_lik")}, x).mean()
        l_task = spec.loss(out["logits"].float(), y)
        l_pre = spec.loss(out["prelim"].float(), y)
        loss = bpp + lambdas[level] * (l_task + a.prelim_weight * l_pre)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        aux_loss = model.entropy.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        step += 1
        if step % 25 == 0 or step == steps:
            dt = (time.time() - t0) / 25
            t0 = time.time()
            log.write([step, level, f"{loss.item():.5f}", f"{bpp.item():.5f}", f"{l_task.item():.5f}",
                       f"{l_pre.item():.5f}", f"{lr:.3g}", f"{dt:.3f}"])
            if step % 100 == 0:
                print(f"step {step}/{steps} q{level} loss {loss.item():.4f} bpp {bpp.item():.4f} "
                      f"task {l_task.item():.4f} prelim {l_pre.item():.4f} {dt:.3f} s/step", file=sys.stderr)
        if step % a.save_every == 0 or step == steps:
            save(step)
    feed.stop = True
    log.close()
    print(f"done: {run.checkpoint} (step {step})", file=sys.stderr)


if __name__ == "__main__":
    main()
