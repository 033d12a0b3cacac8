"""Hostile files and large pictures: the figures of issue 10.

    python benchmarks/hostile.py ../shared/data/photos/005.webp --out benchmarks/results/hostile.json

1. ``--forgeries N`` CRC-valid forged files (``icmcodec.bench.forge``), made from two
   real hp-base files, decoded in-process through ``pipeline.decode_bytes`` (what
   ``icm decode`` runs): each ends in a clean rejection (the error classes the CLI turns
   into one line and exit 2), a decode of the header's size, or anything else (a bug,
   which the CLI would report as "internal error", exit 1). ``--cli-sample`` of them
   also go through the installed ``icm decode`` to check exit status and stderr.
2. Peak RSS of ``icm decode`` on a 1x1 picture forged to a 4096x4096 coded size.
3. A 3840x2160 picture (the photo resized) encoded and decoded with hp-base, in tiles
   (the shipped codec) and in one piece, each in its own process: peak RSS (from
   ``wait4``) and seconds. The two runs alternate, ``--repeat`` times.
4. An 8192x8192 picture (the photo tiled with mirroring) encoded and decoded in tiles.

Peak RSS includes the interpreter, torch and the model (about 0.4 GB before any work).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

WORKER = r"""
import sys, time, numpy as np
from PIL import Image
from icmcodec import pipeline, zoo
from icmcodec.methods.hyperprior.codec import HyperpriorCodec, Tiling
mode, tiled, src, dst, q = sys.argv[1], sys.argv[2] == "tiled", sys.argv[3], sys.argv[4], float(sys.argv[5])
cfg, st, mh = zoo.load_state(zoo.find("hp-base"))
codec = HyperpriorCodec(cfg, st, mh, "cpu", None if tiled else Tiling(10**6, 10**6, 10**6, 10**6))
t0 = time.perf_counter()
if mode == "encode":
    rgb = np.asarray(Image.open(src).convert("RGB"))
    t0 = time.perf_counter()
    open(dst, "wb").write(pipeline.encode_image(rgb, quality=q, codec=codec))
else:
    rgb = pipeline.decode_bytes(open(src, "rb").read(), codec=codec).rgb
    Image.fromarray(rgb).save(dst, compress_level=1)
print(time.perf_counter() - t0)
"""


# A child's peak RSS counts the pages it shared with its parent before exec, so a
# parent holding torch would inflate every figure: a bare interpreter (about 10 MB)
# starts the measured command and reports its peak from wait4.
LAUNCHER = r"""
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(p.pid, 0)
sys.stderr.write(f"\nPEAK_RSS_KB {usage.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str], env=None) -> tuple[float, str, int, str]:
    """(peak RSS in MB of the command, stdout, exit status, stderr)."""
    r = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], capture_output=True, text=True, env=env)
    err, _, peak = r.stderr.rpartition("PEAK_RSS_KB ")
    return int(peak) / 1024, r.stdout, r.returncode, err.strip()


def forgeries(n: int, cli_sample: int, work: Path, photo: np.ndarray) -> dict:
    import bitstream
    from icmcodec import pipeline
    from icmcodec.bench.forge import mutations
    from icmcodec.entropy import CorruptStreamError

    codec = pipeline.load_codec("hp-base", device="cpu")
    a = pipeline.encode_image(photo[:96, :128], quality=1.0, codec=codec)
    b = pipeline.encode_image(photo[-80:, -200:], quality=2.5, codec=codec)
    outcome, bugs, kinds = Counter(), Counter(), Counter()
    sample = []
    for i, (kind, data) in zip(range(n), mutations(a, b, np.random.default_rng(2026))):
        kinds[kind.split(":")[0]] += 1
        try:
            pipeline.decode_bytes(data, codec=codec)
            outcome["decoded"] += 1
        except (bitstream.BitstreamError, CorruptStreamError, pipeline.UsageError):
            outcome["rejected"] += 1
        except Exception as e:  # noqa: BLE001 - counting bugs is the point
            outcome["other exception"] += 1
            bugs[f"{kind}: {e.__class__.__name__}"] += 1
        if i % max(1, n // cli_sample) == 0 and len(sample) < cli_sample:
            sample.append(data)
    cli = Counter()
    for k, data in enumerate(sample):
        f = work / f"forged{k}.icm"
        f.write_bytes(data)
        r = subprocess.run(["icm", "decode", str(f), "-o", str(work / f"forged{k}.png")], capture_output=True, text=True)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        clean = r.returncode in (0, 2) and len(lines) == 1 and "internal error" not in r.stderr
        cli["clean" if clean else f"exit {r.returncode}: {r.stderr[:100]}"] += 1
    return {"forged": n, "outcomes": dict(outcome), "bugs": dict(bugs), "kinds": dict(kinds),
            "cli_sample": dict(cli)}


def forged_huge_coded(work: Path) -> dict:
    import struct

    from icmcodec import pipeline
    from icmcodec.bench.forge import join, split

    codec = pipeline.load_codec("hp-base", device="cpu")
    fixed, chunks = split(pipeline.encode_image(np.zeros((1, 1, 3), np.uint8), quality=1.0, codec=codec))
    f = bytearray(fixed)
    struct.pack_into("<II", f, 44, 4096, 4096)
    path = work / "huge.icm"
    path.write_bytes(join(bytes(f), [(t, fl, b"") for t, fl, _ in chunks]))
    rss, _, code, err = run_measured(["icm", "decode", str(path), "-o", str(work / "huge.png")])
    return {"peak_rss_mb": round(rss), "exit": code, "stderr": err.strip()}


def big_picture(photo: np.ndarray, h: int, w: int) -> np.ndarray:
    """``photo`` mirrored and repeated to ``h`` x ``w`` (real content at native scale)."""
    ph, pw = photo.shape[:2]
    tile = np.concatenate([photo, photo[::-1]], 0)
    tile = np.concatenate([tile, tile[:, ::-1]], 1)
    reps = (-(-h // (2 * ph)), -(-w // (2 * pw)), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:h, :w])


def coding_runs(img: Path, work: Path, modes: list[str], repeat: int, q: float) -> dict:
    rows = {}
    for r in range(repeat):
        for mode in modes:
            icm_file = work / f"{img.stem}-{mode}.icm"
            enc = run_measured([sys.executable, "-c", WORKER, "encode", mode, str(img), str(icm_file), str(q)])
            dec = run_measured([sys.executable, "-c", WORKER, "decode", mode, str(icm_file),
                                str(work / f"{img.stem}-{mode}.png"), str(q)])
            for what, (rss, out, code, err) in (("encode", enc), ("decode", dec)):
                row = rows.setdefault(f"{mode} {what}", {"peak_rss_mb": [], "seconds": [], "failed": []})
                if code == 0:
                    row["peak_rss_mb"].append(round(rss))
                    row["seconds"].append(round(float(out.strip().splitlines()[-1]), 2))
                else:
                    row["failed"].append(f"exit {code}: {err.strip().splitlines()[-1][:200] if err.strip() else ''}")
            if mode == "tiled":
                rows.setdefault("bytes", icm_file.stat().st_size)
    return rows


def main(argv=None) -> None:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", help="a photograph (the large pictures are made from it)")
    p.add_argument("--out", type=Path)
    p.add_argument("--forgeries", type=int, default=1200)
    p.add_argument("--cli-sample", type=int, default=40)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--quality", type=float, default=2.0)
    p.add_argument("--skip-8k", action="store_true")
    a = p.parse_args(argv)
    from icmcodec.imageio import load_rgb

    photo = load_rgb(a.photo)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "photo": a.photo}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.time()
        res["forgeries"] = forgeries(a.forgeries, a.cli_sample, work, photo)
        res["forgeries"]["seconds"] = round(time.time() - t)
        print(json.dumps(res["forgeries"]), file=sys.stderr, flush=True)
        res["forged_1x1_to_4096"] = forged_huge_coded(work)
        print(json.dumps(res["forged_1x1_to_4096"]), file=sys.stderr, flush=True)
        uhd = work / "uhd.png"
        Image.fromarray(np.asarray(Image.fromarray(photo).resize((3840, 2160), Image.LANCZOS))).save(uhd, compress_level=1)
        res["3840x2160"] = coding_runs(uhd, work, ["tiled", "whole"], a.repeat, a.quality)
        print(json.dumps(res["3840x2160"]), file=sys.stderr, flush=True)
        if not a.skip_8k:
            big = work / "8k.png"
            Image.fromarray(big_picture(photo, 8192, 8192)).save(big, compress_level=1)
            res["8192x8192"] = coding_runs(big, work, ["tiled"], 1, a.quality)
            print(json.dumps(res["8192x8192"]), file=sys.stderr, flush=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
