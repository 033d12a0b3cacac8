"""Entropy-coding and whole-codec speed of the shipped recon model on one picture.

    python benchmarks/coder_speed.py ../shared/data/photos/005.webp --crop 768x512

Reports, for each quality: latent symbols, entropy coding alone (y and z, encode and
decode, symbols per second, best of --repeat runs), and the whole encode and decode
(image -> .icm bytes -> image) wall time. Run it on an otherwise idle machine; the
numbers in benchmarks/RESULTS.md say which machine they came from.
"""
from __future__ import annotations

import argparse
import json
import platform
import time



def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--model", default=None)
    p.add_argument("--qualities", default=None, help="comma-separated (default: low, middle, high)")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)

    import torch

    torch.set_grad_enabled(False)
    from icmcodec import pipeline
    from icmcodec.bench.rd import center_crop
    from icmcodec.imageio import load_rgb

    codec = pipeline.load_codec(a.model, device="cpu")
    rgb = load_rgb(a.image)
    if a.crop:
        w, h = map(int, a.crop.split("x"))
        rgb = center_crop(rgb, w, h)
    lo, hi = codec.quality_range
    qs = [float(q) for q in a.qualities.split(",")] if a.qualities else [lo, (lo + hi) / 2, hi]
    rows = []
    for q in qs:
        enc = codec.encode(rgb, q)
        z_idx = codec._z_index(enc["z_sym"].shape)
        y_idx, _, _ = codec._params(enc["z_sym"], q)
        n = enc["y_sym"].size + enc["z_sym"].size
        t_enc = best_of(lambda: (codec.z_coder.encode(enc["z_sym"], z_idx), codec.y_coder.encode(enc["y_sym"], y_idx)),
                        a.repeat)
        t_dec = best_of(lambda: (codec.z_coder.decode(enc["z"], z_idx), codec.y_coder.decode(enc["y"], y_idx)),
                        a.repeat)
        data = pipeline.encode_image(rgb, quality=q, codec=codec)
        t_full_enc = best_of(lambda: pipeline.encode_image(rgb, quality=q, codec=codec), a.repeat)
        t_full_dec = best_of(lambda: pipeline.decode_bytes(data, codec=codec), a.repeat)
        rows.append({"quality": q, "symbols": n, "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
                     "coder_encode_msym_s": n / t_enc / 1e6, "coder_decode_msym_s": n / t_dec / 1e6,
                     "encode_s": t_full_enc, "decode_s": t_full_dec})
    out = {"image": a.image, "size": list(rgb.shape[:2]), "model": codec.config.get("name"),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "rows": rows}
    print(json.dumps(out, indent=1))
    for r in rows:
        print(f"q={r['quality']:g}: {r['symbols']} symbols, {r['bpp']:.3f} bpp | coder enc {r['coder_encode_msym_s']:.1f} "
              f"/ dec {r['coder_decode_msym_s']:.1f} Msym/s | encode {r['encode_s']:.3f} s, decode {r['decode_s']:.3f} s")


if __name__ == "__main__":
    main()
