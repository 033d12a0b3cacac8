"""MPA's costs beside its base, measured in one run.

    python benchmarks/mpa.py ../shared/data/camvid --out benchmarks/results/mpa-costs

For every installed MPA path set (``--tasks``, default those shipped): on CamVid val
frames (``--limit``), each file is coded once (the base's encoder) and decoded, model
loaded, to the picture by the base alone (``--task recon``: TIC without paths) and to
the task's picture through its paths at the set's strength; the decode time (the
median over frames, after a warm-up pass over them; both decodes of a frame back to back) excludes
the task network, which runs the same either way. The PSNR of the decoded picture
against the original at strengths 0 (the base), 0.25, 0.5 and 1 shows how far each set
moves the picture from people towards its task. Beside it: the parameters of each
path set against the base's learned parameters, and the FLOPs of g_s per pixel of a
768x512 picture (torch's ``FlopCounterMode``: every matrix product and convolution), base
and with the paths at strengths 0.25, 0.5 and 1 (only the selected tokens run a side
path, so the cost grows with rho).

Writes ``costs.json`` to ``--out`` and prints the table. Timings are wall-clock on the
machine that runs it (the JSON records its CPU count); compare ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="CamVid root (val split)")
    p.add_argument("--limit", type=int, default=12)
    p.add_argument("--model", default="mpa-tic-hybrid")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: every installed set's)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    import torch
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    import bitstream
    from icmcodec import pipeline
    from icmcodec.bench.ra import spread
    from icmcodec.methods.mpa.serves import installed_sets
    from icmcodec.tasks.registry import task as task_spec

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    base = pipeline.load_codec(a.model, device="cpu")
    sets = {m.config["task"]: m for m in reversed(installed_sets(base.model_hash))}  # defaults win
    tasks = a.tasks.split(",") if a.tasks else sorted(sets)
    frames = [s.image() for s in spread(task_spec("semseg").dataset(a.data, "val"), a.limit)]
    files = [pipeline.encode_image(f, quality=base.default_quality, codec=base) for f in frames]
    headers = [bitstream.unpack(d) for d in files]
    n_base = sum(p.numel() for m in (base.g_a, base.g_s, base.h_a) for p in m.parameters())
    result = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
              "frames": len(frames), "quality": base.default_quality, "base_parameters": n_base, "tasks": {}}

    def decode_s(codec, c) -> float:
        t = time.perf_counter()
        codec.decode_chunks(c.header, c.chunks)
        return time.perf_counter() - t

    big = np.asarray(Image.fromarray(frames[0]).resize((768, 512), Image.BICUBIC))
    an = base.analyse(big)
    enc = base.code(an, base.default_quality)
    y_hat = torch.from_numpy(base.y_hat(enc.chunks[0].data, enc.chunks[1].data, enc.coded_size,
                                        base.default_quality))[None]

    def g_s_flops(g) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            g(y_hat)
        return fc.get_total_flops() / (768 * 512)

    result["base_g_s_flops_per_pixel"] = g_s_flops(base.g_s)
    for task in tasks:
        ad = pipeline.load_adapter(base, task, name=sets[task].name)
        coded = base.bound(ad).for_task(task, None)
        plain = base.for_task("recon")
        # warm up on every frame: after a single warm-up decode the first timed decodes ran slow
        # (the paths measured 0.72x of the base; 1.04x with this)
        for c in headers:
            decode_s(coded, c), decode_s(plain, c)
        t_base, t_path = [], []
        for c in headers:
            t_base.append(decode_s(plain, c))
            t_path.append(decode_s(coded, c))
        n = sum(p.numel() for p in ad.paths.parameters())
        psnr = {}
        for r in (0.0, 0.25, 0.5, 1.0):  # people -> machines: how far the picture moves from the original
            c = base.bound(ad).for_task(task, r)
            vals = [_psnr(c.decode_chunks(h.header, h.chunks), f) for h, f in zip(headers, frames)]
            psnr[f"{r:g}"] = float(np.mean(vals))
        flops = {f"{r:g}": g_s_flops(ad.g_s(base.g_s, r)) for r in (0.25, 0.5, 1.0)}
        result["tasks"][task] = {
            "set": sets[task].name, "strength": ad.strength, "parameters": n, "parameters_vs_base": n / n_base,
            "decode_median_s": {"base": statistics.median(t_base), "with paths": statistics.median(t_path)},
            "decode_ratio": statistics.median(t_path) / statistics.median(t_base),
            "g_s_flops_per_pixel": flops, "psnr_db_by_strength": psnr}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "costs.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"base: {n_base:,} parameters, g_s {result['base_g_s_flops_per_pixel'] / 1e3:.1f} kFLOPs per pixel")
    print("| path set | parameters (vs base) | decode, base alone | decode, with paths | ratio | g_s kFLOPs/pixel "
          "at rho 0.25 / 0.5 / 1 |")
    print("|---|---|---|---|---|---|")
    for task, r in result["tasks"].items():
        d = r["decode_median_s"]
        f = r["g_s_flops_per_pixel"]
        print(f"| {r['set']} (rho {r['strength']:g}) | {r['parameters']:,} ({r['parameters_vs_base']:.2%}) | "
              f"{d['base'] * 1000:.0f} ms | {d['with paths'] * 1000:.0f} ms | {r['decode_ratio']:.2f} | "
              f"{f['0.25'] / 1e3:.1f} / {f['0.5'] / 1e3:.1f} / {f['1'] / 1e3:.1f} |")
    for task, r in result["tasks"].items():
        print(f"{r['set']}: PSNR against the original by strength: "
              + ", ".join(f"rho {k} {v:.2f} dB" for k, v in r["psnr_db_by_strength"].items()))
    print(f"wrote {out / 'costs.json'}", file=sys.stderr)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


if __name__ == "__main__":
    main()
