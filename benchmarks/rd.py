"""Rate-distortion benchmark: icm's recon codec against conventional codecs, real bytes.

    python benchmarks/rd.py ../shared/data/photos --crop 768x512 --out benchmarks/results/photos

For every image: icm at several qualities (encode -> .icm bytes -> decode) and each
anchor at several qualities (Pillow: JPEG 4:2:0 with optimised Huffman tables, WebP
method 6, AVIF speed 6 4:4:4; a codec Pillow lacks is skipped with a notice). Rate is
``8 * len(file bytes) / pixels`` (ours: the whole .icm file, header included);
distortion is PSNR on 8-bit RGB. BD-rate of icm against each anchor uses the
``bjontegaard`` package (pchip), on the overlapping PSNR range only, per image, and
the mean over images is reported. Writes ``rd.json`` and ``rd.csv`` to ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, features

ANCHORS = {
    "jpeg": dict(fmt="JPEG", feature="jpg", qualities=[5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
                 kw=dict(optimize=True, subsampling="4:2:0")),
    "webp": dict(fmt="WEBP", feature="webp", qualities=[5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
                 kw=dict(method=6)),
    "avif": dict(fmt="AVIF", feature="avif", qualities=[10, 20, 30, 40, 50, 60, 70, 80, 90],
                 kw=dict(speed=6, subsampling="4:4:4")),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def center_crop(a: np.ndarray, w: int, h: int) -> np.ndarray:
    H, W = a.shape[:2]
    if H < h or W < w:
        raise SystemExit(f"image {W}x{H} smaller than crop {w}x{h}")
    y, x = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(a[y : y + h, x : x + w])


def run_anchor(name: str, rgb: np.ndarray) -> list[dict]:
    spec = ANCHORS[name]
    rows = []
    for q in spec["qualities"]:
        buf = io.BytesIO()
        t0 = time.perf_counter()
        Image.fromarray(rgb).save(buf, format=spec["fmt"], quality=q, **spec["kw"])
        t1 = time.perf_counter()
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        t2 = time.perf_counter()
        rows.append({"codec": name, "quality": q, "bytes": buf.tell(), "psnr": psnr(rgb, dec),
                     "enc_s": t1 - t0, "dec_s": t2 - t1})
    return rows


def run_icm(codec, rgb: np.ndarray, qualities: list[float]) -> list[dict]:
    from icmcodec import pipeline

    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        data = pipeline.encode_image(rgb, quality=q, codec=codec)
        t1 = time.perf_counter()
        out = pipeline.decode_bytes(data, codec=codec)
        t2 = time.perf_counter()
        rows.append({"codec": "icm", "quality": q, "bytes": len(data), "psnr": psnr(rgb, out.rgb),
                     "enc_s": t1 - t0, "dec_s": t2 - t1})
    return rows


def bd_rate(anchor: list[dict], test: list[dict], pixels: int) -> float | None:
    """BD-rate (%) of ``test`` against ``anchor``; None if the PSNR ranges do not overlap."""
    import bjontegaard as bd

    def curve(rows):
        r = sorted((8 * x["bytes"] / pixels, x["psnr"]) for x in rows if np.isfinite(x["psnr"]))
        rate, dist = [], []
        for a, d in r:  # keep a strictly increasing curve (pchip needs monotone data)
            if not dist or d > dist[-1]:
                rate.append(a)
                dist.append(d)
        return np.array(rate), np.array(dist)

    ra, da = curve(anchor)
    rt, dt = curve(test)
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    if hi <= lo or len(ra) < 2 or len(rt) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bd.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False, min_overlap=0))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--crop", default=None, help="center crop WxH, e.g. 768x512")
    p.add_argument("--model", default=None, help="icm model name or folder (default: recon default)")
    p.add_argument("--qualities", default=None, help="comma-separated icm qualities (default: 6 over the range)")
    p.add_argument("--anchors", default="jpeg,webp,avif")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rd"))
    a = p.parse_args(argv)

    import torch

    torch.set_grad_enabled(False)
    from icmcodec import pipeline
    from icmcodec.imageio import IMAGE_SUFFIXES, load_rgb

    codec = pipeline.load_codec(a.model, device="cpu")
    lo, hi = codec.quality_range
    qualities = [float(q) for q in a.qualities.split(",")] if a.qualities else list(np.linspace(lo, hi, 6))
    anchors = []
    for name in a.anchors.split(","):
        if not features.check(ANCHORS[name]["feature"]):
            print(f"notice: Pillow has no {name} support here; skipping it", file=sys.stderr)
            continue
        anchors.append(name)
    files = sorted(f for f in a.folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    results = []
    for i, f in enumerate(files):
        rgb = load_rgb(f)
        if a.crop:
            w, h = map(int, a.crop.lower().split("x"))
            rgb = center_crop(rgb, w, h)
        rows = run_icm(codec, rgb, qualities)
        for name in anchors:
            rows += run_anchor(name, rgb)
        px = rgb.shape[0] * rgb.shape[1]
        for r in rows:
            r.update(image=f.name, bpp=8 * r["bytes"] / px)
        bd = {n: bd_rate([r for r in rows if r["codec"] == n], [r for r in rows if r["codec"] == "icm"], px)
              for n in anchors}
        results.append({"image": f.name, "pixels": px, "rows": rows, "bd_rate": bd})
        print(f"[{i + 1}/{len(files)}] {f.name}: " + ", ".join(
            f"BD-rate vs {n} {v:+.1f}%" if v is not None else f"vs {n}: no overlap" for n, v in bd.items()),
            file=sys.stderr)
    summary = {}
    for n in anchors:
        vals = [r["bd_rate"][n] for r in results if r["bd_rate"][n] is not None]
        summary[n] = {"mean_bd_rate_pct": float(np.mean(vals)) if vals else None, "images": len(vals)}
    icm_rows = [x for r in results for x in r["rows"] if x["codec"] == "icm"]
    summary["icm"] = {
        "mean_bpp": {f"{q:g}": float(np.mean([x["bpp"] for x in icm_rows if x["quality"] == q])) for q in qualities},
        "mean_psnr": {f"{q:g}": float(np.mean([x["psnr"] for x in icm_rows if x["quality"] == q])) for q in qualities},
        "mean_enc_s": float(np.mean([x["enc_s"] for x in icm_rows])),
        "mean_dec_s": float(np.mean([x["dec_s"] for x in icm_rows])),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {"folder": str(a.folder), "crop": a.crop, "model": codec.config.get("name"), "qualities": qualities,
            "anchors": {n: ANCHORS[n]["kw"] | {"qualities": ANCHORS[n]["qualities"]} for n in anchors},
            "torch_threads": torch.get_num_threads()}
    (a.out / "rd.json").write_text(json.dumps({"meta": meta, "summary": summary, "images": results}, indent=1))
    with open(a.out / "rd.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "codec", "quality", "bytes", "bpp", "psnr", "enc_s", "dec_s"])
        for r in results:
            for x in r["rows"]:
                w.writerow([r["image"], x["codec"], x["quality"], x["bytes"], f"{x['bpp']:.5f}", f"{x['psnr']:.4f}",
                            f"{x['enc_s']:.4f}", f"{x['dec_s']:.4f}"])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
