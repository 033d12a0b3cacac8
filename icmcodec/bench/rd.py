"""Rate-distortion benchmark: icm's recon codec against conventional codecs, real bytes.

    python benchmarks/rd.py ../shared/data/photos --crop 768x512 --out benchmarks/results/photos

For every image in a folder: icm at several qualities (encode -> complete .icm bytes ->
decode) and every available anchor (:mod:`icmcodec.bench.anchors`) at 8 qualities.
Rate is ``8 * len(bytes) / pixels`` (ours: the whole file, header included); quality
is PSNR on 8-bit RGB and MS-SSIM; encode and decode wall time and peak memory (RSS
above the starting level) are measured per call. BD-rate (PSNR and MS-SSIM) and
BD-PSNR of icm against each anchor use the ``bjontegaard`` package (pchip) on the
overlapping range only, per image, then averaged. Writes ``rd.json``, ``rd.csv`` and
``rd.png`` (mean curves) to ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from icmcodec.bench.anchors import icm_qualities, pick_anchors
from icmcodec.bench.measure import MsSsim, PeakMemory, bd_metric, bd_rate, psnr


def center_crop(a: np.ndarray, w: int, h: int) -> np.ndarray:
    H, W = a.shape[:2]
    if H < h or W < w:
        if W >= h and H >= w:  # portrait picture: crop the rotated size
            w, h = h, w
        else:
            raise ValueError(f"image {W}x{H} smaller than the crop {w}x{h}")
    y, x = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(a[y : y + h, x : x + w])


def measure(rgb: np.ndarray, encode, decode, msssim: MsSsim | None = None) -> dict:
    """Encode and decode once: size, PSNR, MS-SSIM (``msssim``: the picture's cached
    reference, made once per picture), wall times and peak memory of each half."""
    with PeakMemory() as m_enc:
        t0 = time.perf_counter()
        data = encode(rgb)
        t1 = time.perf_counter()
    with PeakMemory() as m_dec:
        t2 = time.perf_counter()
        out = decode(data)
        t3 = time.perf_counter()
    px = rgb.shape[0] * rgb.shape[1]
    return {"bytes": len(data), "bpp": 8 * len(data) / px, "psnr": psnr(rgb, out), "ms_ssim": (msssim or MsSsim(rgb))(out),
            "enc_s": t1 - t0, "dec_s": t3 - t2, "enc_peak_mb": m_enc.peak / 2**20, "dec_peak_mb": m_dec.peak / 2**20}


def summarize(results: list[dict], codecs: list[str]) -> dict:
    out = {}
    for name in codecs:
        rows = [x for r in results for x in r["rows"] if x["codec"] == name]
        entry = {k: float(np.mean([x[k] for x in rows])) for k in ("enc_s", "dec_s", "enc_peak_mb", "dec_peak_mb")}
        entry["curve"] = [
            {"quality": q, **{k: float(np.mean([x[k] for x in rows if x["quality"] == q and x[k] is not None]))
                              for k in ("bpp", "psnr", "ms_ssim") if any(x[k] is not None for x in rows)}}
            for q in sorted({x["quality"] for x in rows})
        ]
        if name != "icm":
            for key in ("bd_rate_psnr", "bd_rate_msssim", "bd_psnr"):
                vals = [r["bd"][name][key] for r in results if r["bd"][name][key] is not None]
                entry[f"mean_{key}"] = float(np.mean(vals)) if vals else None
                entry[f"images_{key}"] = len(vals)
        out[name] = entry
    return out


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for name, entry in summary.items():
        c = entry["curve"]
        ax.plot([p["bpp"] for p in c], [p["psnr"] for p in c], "o-" if name == "icm" else ".--",
                label=name, linewidth=2.2 if name == "icm" else 1.2)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel("PSNR (dB, 8-bit RGB)")
    ax.set_xlim(0, 2.0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks/rd.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--crop", default=None, help="center crop WxH, e.g. 768x512 (portrait pictures: HxW)")
    p.add_argument("--model", default=None, help="icm model name or folder (default: the recon default)")
    p.add_argument("--qualities", default=None, help="comma-separated icm qualities (default: 9 over the range)")
    p.add_argument("--anchors", default="jpeg,webp,avif,heic,jxl")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rd"))
    a = p.parse_args(argv)
    import torch

    with torch.no_grad():  # restores the caller's grad mode (tests call main in-process)
        _run(a)


def _run(a) -> None:

    import torch

    from icmcodec import pipeline
    from icmcodec.imageio import IMAGE_SUFFIXES, load_rgb

    codec = pipeline.load_codec(a.model, device="cpu")
    qualities = icm_qualities(codec, a.qualities)
    anchors = pick_anchors(a.anchors)
    files = sorted(f for f in a.folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if a.limit:
        files = files[: a.limit]
    if not files:
        raise SystemExit(f"no images in {a.folder}")
    results, t_start = [], time.time()
    for i, f in enumerate(files):
        rgb = load_rgb(f)
        if a.crop:
            w, h = map(int, a.crop.lower().split("x"))
            rgb = center_crop(rgb, w, h)
        rows, ref = [], MsSsim(rgb)
        for q in qualities:
            m = measure(rgb, lambda x: pipeline.encode_image(x, quality=q, codec=codec),
                        lambda d: pipeline.decode_bytes(d, codec=codec).rgb, ref)
            rows.append({"codec": "icm", "quality": q, **m})
        for name, anchor in anchors.items():
            for q in anchor.qualities:
                rows.append({"codec": name, "quality": q,
                             **measure(rgb, lambda x: anchor.encode(x, q), anchor.decode, ref)})
        ours = [r for r in rows if r["codec"] == "icm"]
        bd = {}
        for name in anchors:
            theirs = [r for r in rows if r["codec"] == name]
            pair = lambda rs, k: ([r["bpp"] for r in rs], [r[k] for r in rs])  # noqa: E731
            bd[name] = {"bd_rate_psnr": bd_rate(pair(theirs, "psnr"), pair(ours, "psnr")),
                        "bd_rate_msssim": bd_rate(pair(theirs, "ms_ssim"), pair(ours, "ms_ssim")),
                        "bd_psnr": bd_metric(pair(theirs, "psnr"), pair(ours, "psnr"))}
        results.append({"image": f.name, "size": list(rgb.shape[:2]), "rows": rows, "bd": bd})
        print(f"[{i + 1}/{len(files)}] {f.name} ({time.time() - t_start:.0f} s): " + ", ".join(
            f"vs {n} {v['bd_rate_psnr']:+.1f}%" if v["bd_rate_psnr"] is not None else f"vs {n}: no overlap"
            for n, v in bd.items()), file=sys.stderr, flush=True)
    summary = summarize(results, ["icm", *anchors])
    meta = {"folder": str(a.folder), "crop": a.crop, "images": len(files), "model": codec.config.get("name"),
            "model_hash": codec.model_hash.hex(), "icm_qualities": qualities,
            "anchors": {n: {"settings": x.settings, "qualities": x.qualities} for n, x in anchors.items()},
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.python_version()}",
            "wall_s": time.time() - t_start}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "rd.json").write_text(json.dumps({"meta": meta, "summary": summary, "images": results}, indent=1))
    with open(a.out / "rd.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        keys = ["bytes", "bpp", "psnr", "ms_ssim", "enc_s", "dec_s", "enc_peak_mb", "dec_peak_mb"]
        w.writerow(["image", "codec", "quality", *keys])
        for r in results:
            for x in r["rows"]:
                w.writerow([r["image"], x["codec"], x["quality"], *[x[k] for k in keys]])
    plot(summary, a.out / "rd.png", f"{a.folder.name}: {len(files)} images" + (f", {a.crop}" if a.crop else ""))
    print(format_table(summary), file=sys.stderr)
    print(f"wrote {a.out}/rd.json, rd.csv, rd.png ({meta['wall_s']:.0f} s)", file=sys.stderr)


def format_table(summary: dict) -> str:
    lines = ["| anchor | BD-rate (PSNR) | BD-rate (MS-SSIM) | BD-PSNR | enc s | dec s |", "|---|---|---|---|---|---|"]
    fmt = lambda v, u: "n/a" if v is None else f"{v:+.1f}{u}"  # noqa: E731
    for name, e in summary.items():
        if name == "icm":
            continue
        lines.append(f"| {name} | {fmt(e['mean_bd_rate_psnr'], ' %')} | {fmt(e['mean_bd_rate_msssim'], ' %')} | "
                     f"{fmt(e['mean_bd_psnr'], ' dB')} | {e['enc_s']:.3f} | {e['dec_s']:.3f} |")
    e = summary["icm"]
    lines.append(f"| icm (ours) | | | | {e['enc_s']:.3f} | {e['dec_s']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
