"""Entropy-coding and whole-codec speed of a recon model (any method) on one picture.

    python benchmarks/coder_speed.py ../shared/data/photos/005.webp --crop 768x512

Reports, for each quality: latent symbols, the time inside the range coder during a
real encode and decode (symbols per second, best of --repeat runs; decode includes the
canonical re-encode check), and the whole encode and decode
(image -> .icm bytes -> image) wall time. Run it on an otherwise idle machine; the
numbers in benchmarks/RESULTS.md say which machine they came from.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import contextmanager

import bitstream
from icmcodec.entropy import TableCoder


@contextmanager
def coder_clock(codec):
    """Seconds spent inside the range coder (every ``TableCoder`` of ``codec``) while
    the block runs: ``put`` (encoding a segment) and ``take`` (decoding one). Works for
    every method, however many segments it codes."""
    clock = {"put": 0.0, "take": 0.0}
    coders = [c for c in vars(codec).values() if isinstance(c, TableCoder)]

    def timed(coder, name):
        inner = getattr(TableCoder, f"_{name}")

        def run(*args):
            t = time.perf_counter()
            try:
                return inner(coder, *args)
            finally:
                clock[name] += time.perf_counter() - t
        return run

    for c in coders:
        c._put, c._take = timed(c, "put"), timed(c, "take")
    try:
        yield clock
    finally:
        for c in coders:
            del c._put, c._take


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
        data = pipeline.encode_image(rgb, quality=q, codec=codec)
        n = sum(v.size for v in codec.encode_picture(rgb, bitstream.canonical_quality(q)).symbols.values())
        enc_s, dec_s, t_full_enc, t_full_dec = [], [], [], []
        for _ in range(a.repeat):
            with coder_clock(codec) as clock:
                t = time.perf_counter()
                pipeline.encode_image(rgb, quality=q, codec=codec)
                t_full_enc.append(time.perf_counter() - t)
            enc_s.append(clock["put"])
            with coder_clock(codec) as clock:
                t = time.perf_counter()
                pipeline.decode_bytes(data, codec=codec)
                t_full_dec.append(time.perf_counter() - t)
            dec_s.append(clock["take"] + clock["put"])  # decode + the canonical re-encode
        rows.append({"quality": q, "symbols": n, "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
                     "coder_encode_msym_s": n / min(enc_s) / 1e6, "coder_decode_msym_s": n / min(dec_s) / 1e6,
                     "encode_s": min(t_full_enc), "decode_s": min(t_full_dec)})
    out = {"image": a.image, "size": list(rgb.shape[:2]), "model": codec.config.get("name"),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "rows": rows}
    print(json.dumps(out, indent=1))
    for r in rows:
        print(f"q={r['quality']:g}: {r['symbols']} symbols, {r['bpp']:.3f} bpp | coder enc {r['coder_encode_msym_s']:.1f} "
              f"/ dec {r['coder_decode_msym_s']:.1f} Msym/s | encode {r['encode_s']:.3f} s, decode {r['decode_s']:.3f} s")


if __name__ == "__main__":
    main()
