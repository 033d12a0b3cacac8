"""DoRA-ICM's costs beside Prompt-ICM and the hp-base path, measured in one run.

    python benchmarks/dora.py ../shared/data/camvid --out benchmarks/results/dora-costs

* decode time of CamVid val frames, models loaded, every codec on the same frames in
  turn (the median over ``--limit`` frames, after one warm-up decode each): DoRA-ICM's
  set, Prompt-ICM (``picm-lite0`` + its semseg adapter) and the hp-base path (hp-base's
  picture, then the semseg network);
* encoder and decoder GFLOPs of a 768x512 picture, counted by torch's
  ``FlopCounterMode`` over the whole encode (``analyse`` + ``code``) and the whole decode
  (``decode_bytes``): every convolution and matrix product, the exact integer networks
  (run as float64 convolutions) included;
* the DoRA-ICM file split into adapters, preliminary decoder, entropy model and decoder,
  against the backbone part the encoder runs and the backbone's weights file.

Writes ``costs.json`` to ``--out`` and prints the tables. Timings are wall-clock on
whatever machine runs it (the JSON records its CPU count); compare ratios within one run.
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
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--dora", default="dora-lite0-semseg")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    import torch
    from PIL import Image
    from safetensors.numpy import load_file
    from torch.utils.flop_counter import FlopCounterMode

    from icmcodec import pipeline, zoo
    from icmcodec.bench.ra import spread
    from icmcodec.tasks.registry import task as task_spec

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    paths = {"dora-icm": dict(method="dora-icm", model=a.dora), "prompt-icm": dict(method="prompt-icm"),
             "hp-base path": dict(method="hyperprior")}
    coders = {k: pipeline.encoder_for("semseg", device="cpu", **v) for k, v in paths.items()}
    frames = [s.image() for s in spread(task_spec("semseg").dataset(a.data, "val"), a.limit)]
    files = {k: [pipeline.encode_image(f, task="semseg", codec=c, tasknet=n) for f in frames]
             for k, (c, n) in coders.items()}
    times: dict[str, list[float]] = {k: [] for k in coders}
    for k, (c, n) in coders.items():  # warm-up: first-call allocations and kernel selection
        pipeline.decode_bytes(files[k][0], codec=c, tasknet=n)
    for i in range(len(frames)):
        for k, (c, n) in coders.items():
            t = time.perf_counter()
            pipeline.decode_bytes(files[k][i], codec=c, tasknet=n)
            times[k].append(time.perf_counter() - t)
    decode = {k: statistics.median(v) for k, v in times.items()}
    bpp = {k: float(np.mean([8 * len(d) / (f.shape[0] * f.shape[1]) for d, f in zip(files[k], frames)]))
           for k in files}

    big = np.asarray(Image.fromarray(frames[0]).resize((768, 512), Image.BICUBIC))
    flops = {}
    for k, (c, n) in coders.items():
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            data = pipeline.encode_image(big, task="semseg", codec=c, tasknet=n)
        enc = fc.get_total_flops()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            pipeline.decode_bytes(data, codec=c, tasknet=n)
        flops[k] = {"encoder_gflops": enc / 1e9, "decoder_gflops": fc.get_total_flops() / 1e9}

    entry = zoo.find(a.dora, method="dora-icm", task="semseg")
    state = load_file(str(entry.path / "model.safetensors"))
    split: dict[str, int] = {}
    for key, v in state.items():
        part = ("adapters" if key.startswith("adapter.") else "preliminary decoder" if key.startswith("float.prelim.")
                else "decoder" if key.startswith("float.decoder.") else "entropy model")
        split[part] = split.get(part, 0) + int(v.nbytes)
    codec = coders["dora-icm"][0]
    backbone = codec.encoder()
    run_bytes = sum(v.numel() * 4 for k, v in backbone.state_dict().items() if v.is_floating_point())
    from icmcodec.tasks.pretrained import lite_weights_path

    weights_file = lite_weights_path(codec.arch.backbone).stat().st_size
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "frames": len(frames), "decode_median_s": decode, "mean_bpp": bpp,
        "decode_ratio": {"vs prompt-icm": decode["dora-icm"] / decode["prompt-icm"],
                         "vs hp-base path": decode["dora-icm"] / decode["hp-base path"]},
        "gflops_768x512": flops, "dora_file_bytes": split, "dora_file_total": sum(split.values()),
        "backbone_run_bytes": run_bytes, "backbone_weights_file_bytes": weights_file,
        "adapters_vs_backbone_run": split.get("adapters", 0) / run_bytes,
        "adapters_vs_backbone_file": split.get("adapters", 0) / weights_file,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "costs.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| path | decode (median, model loaded) | mean bpp | encoder GFLOPs | decoder GFLOPs (768x512) |")
    print("|---|---|---|---|---|")
    for k in coders:
        print(f"| {k} | {decode[k] * 1000:.0f} ms | {bpp[k]:.4f} | {flops[k]['encoder_gflops']:.2f} | "
              f"{flops[k]['decoder_gflops']:.2f} |")
    print(f"decode time, DoRA-ICM / Prompt-ICM: {result['decode_ratio']['vs prompt-icm']:.2f}; "
          f"/ hp-base path: {result['decode_ratio']['vs hp-base path']:.2f}")
    print("DoRA-ICM file: " + ", ".join(f"{k} {v:,} B" for k, v in split.items()) +
          f"; adapters / backbone run {result['adapters_vs_backbone_run']:.2%}, "
          f"/ backbone weights file {result['adapters_vs_backbone_file']:.2%}")
    print(f"wrote {out / 'costs.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
