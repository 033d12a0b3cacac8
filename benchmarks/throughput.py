"""Pictures per second through the real coding path (issue 15).

    python benchmarks/throughput.py ../shared/data/photos --out benchmarks/results/throughput.json

Kodak-size pictures (768x512 centre crops of the given photos, repeated to ``--count``)
go through ``analyse_batch`` + ``code`` + the container, as ``icm encode --batch B``
does, and back through ``decode_bytes``, with the model loaded; each batch size is
timed on the device of ``--device`` (the CPU always; a GPU when there is one).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def main(argv=None) -> None:
    from icmcodec import pipeline
    from icmcodec.bench.rd import center_crop
    from icmcodec.imageio import IMAGE_SUFFIXES, load_rgb

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", type=Path)
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--quality", type=float, default=2.0)
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    photos = [center_crop(load_rgb(f), 768, 512) for f in sorted(a.photos.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    pics = [photos[i % len(photos)] for i in range(a.count)]
    codec = pipeline.load_codec(a.model, device=a.device)
    q = pipeline.check_quality(codec, a.quality)
    rows = []
    for b in (int(x) for x in a.batches.split(",")):
        files = []
        codec.analyse_batch(pics[:b])  # warm-up (and cuDNN autotuning on a GPU)
        t0 = time.perf_counter()
        for k in range(0, len(pics), b):
            chunk = pics[k:k + b]
            for rgb, an in zip(chunk, codec.analyse_batch(chunk)):
                files.append(pipeline.encode_image(rgb, quality=q, codec=codec, analysis=an))
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        for data in files:
            pipeline.decode_bytes(data, codec=codec)
        t_dec = time.perf_counter() - t0
        rows.append({"batch": b, "encode_per_s": len(pics) / t_enc, "decode_per_s": len(pics) / t_dec})
        print(f"batch {b}: encode {len(pics) / t_enc:.2f}/s, decode {len(pics) / t_dec:.2f}/s", flush=True)
    res = {"device": str(codec.device), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "gpu": torch.cuda.get_device_name() if codec.device.type == "cuda" else None,
           "model": codec.config.get("name"), "pictures": len(pics), "size": "768x512", "rows": rows}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
