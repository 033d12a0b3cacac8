"""Rate control on the validation photos (issue 15): achieved bpp against the asked one,
and the time of a ``--bpp`` encode against a plain encode of the same picture.

    python benchmarks/rate_control.py ../shared/data/photos --out benchmarks/results/rate-control.json

Each photo's 768x512 centre crop is encoded with ``bpp=B`` for every target, and at a
plain quality; both encodes are timed alternately (best of ``--repeat``), model loaded.
A target above the model's top quality gives the top quality's file (reported as
``capped``); one below its lowest gives an error (``too small``).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> None:
    import bitstream
    from icmcodec import pipeline
    from icmcodec.bench.rd import center_crop
    from icmcodec.imageio import IMAGE_SUFFIXES, load_rgb

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", type=Path)
    p.add_argument("--targets", default="0.1,0.2,0.35,0.5")
    p.add_argument("--model", default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    codec = pipeline.load_codec(a.model, device="cpu")
    rows = []
    for f in sorted(a.photos.iterdir()):
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        rgb = center_crop(load_rgb(f), 768, 512)
        top = 8 * len(pipeline.encode_image(rgb, quality=codec.quality_range[1], codec=codec)) / rgb[..., 0].size
        for b in (float(t) for t in a.targets.split(",")):
            t_plain, t_rate = [], []
            for _ in range(a.repeat):
                t = time.perf_counter()
                data = pipeline.encode_image(rgb, bpp=b, codec=codec)
                t_rate.append(time.perf_counter() - t)
                q = bitstream.unpack(data).header.quality
                t = time.perf_counter()
                pipeline.encode_image(rgb, quality=q, codec=codec)
                t_plain.append(time.perf_counter() - t)
            got = 8 * len(data) / rgb[..., 0].size
            rows.append({"photo": f.name, "asked": b, "bpp": got, "ratio": got / b, "quality": q,
                         "capped": bool(top < b), "time_ratio": min(t_rate) / min(t_plain)})
            print(json.dumps(rows[-1]), flush=True)
    free = [r for r in rows if not r["capped"]]
    summary = {"ratio_min": min(r["ratio"] for r in free), "ratio_max": max(r["ratio"] for r in free),
               "time_ratio_median": float(np.median([r["time_ratio"] for r in rows])),
               "time_ratio_max": max(r["time_ratio"] for r in rows), "capped": len(rows) - len(free)}
    res = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "model": codec.config.get("name"),
           "summary": summary, "rows": rows}
    print(json.dumps(summary))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
