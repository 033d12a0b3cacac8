"""Hostile files and large pictures: the figures of issues 10 and 24.

    python benchmarks/hostile.py ../shared/data/photos/005.webp --out benchmarks/results/hostile.json
    python benchmarks/hostile.py ../shared/data/photos/005.webp --forgeries 4000 --skip-coding \
        --out benchmarks/results/hostile-fuzz.json

1. ``--forgeries N`` CRC-valid forged files (``icmcodec.bench.forge``), made from real
   files of every method with shipped models (``--methods``, default all of them: for
   each, a recon file where the method codes a picture and a semseg file through its
   task network or prompt set; two small crops of the photo each, the second one's
   chunks get spliced in), N in all, shared evenly between those files. Each is decoded
   in-process through ``pipeline.decode_bytes`` (what ``icm decode`` runs) and ends in a
   clean rejection (the error classes the CLI turns into one line and exit 2), a decode
   of the header's size, or anything else (a bug, which the CLI would report as
   "internal error", exit 1); counted per method and file, with the slowest decodes.
   ``--cli-sample`` of them also go through ``icm decode`` to check exit status and
   stderr.
2. Every one of those files forged to claim an 8192x8192 picture (coded size to match,
   CRC fixed), with its payloads kept and emptied, decoded in its own process: outcome,
   seconds and peak RSS against ``--huge-seconds`` / ``--huge-rss-mb``. Then peak RSS
   of ``icm decode`` on a 1x1 picture forged to a 4096x4096 coded size.
3. A 3840x2160 picture (the photo resized) encoded and decoded with hp-base, in tiles
   (the shipped codec) and in one piece, each in its own process: peak RSS (from
   ``wait4``) and seconds. The two runs alternate, ``--repeat`` times.
4. An 8192x8192 picture (the photo tiled with mirroring) encoded and decoded in tiles.

``--skip-coding`` runs sections 1 and 2 only (the fuzz). Peak RSS includes the
interpreter, torch and the model (about 0.4 GB before any work).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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


def run_measured(cmd: list[str], env=None, timeout: float | None = None) -> tuple[float, str, int, str]:
    """(peak RSS in MB of the command, stdout, exit status, stderr); past ``timeout``
    seconds the command is killed (exit status -9, RSS unknown: 0)."""
    launcher = LAUNCHER if timeout is None else LAUNCHER.replace("os.wait4(p.pid, 0)", f"_wait(p, {timeout})")
    if timeout is not None:
        launcher = TIMED + launcher
    r = subprocess.run([sys.executable, "-S", "-c", launcher, *cmd], capture_output=True, text=True, env=env)
    err, _, peak = r.stderr.rpartition("PEAK_RSS_KB ")
    return (int(peak) / 1024 if peak.strip() else 0.0), r.stdout, r.returncode, err.strip()


TIMED = r"""
import os, signal, time
def _wait(p, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return pid, status, usage
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    return os.wait4(p.pid, 0)
"""


def icm_command() -> list[str]:
    """The installed ``icm``, or the CLI module of this tree when none is on PATH."""
    exe = shutil.which("icm")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


def fuzz_sets(methods: list[str] | None) -> list[dict]:
    """The files the forgeries start from: per method with a shipped model (or each of
    ``methods``), its default model's recon file if it codes pictures and a semseg file
    (through the default task network, or the model's semseg prompt set)."""
    from icmcodec import pipeline, zoo
    from icmcodec.registry import METHODS

    out = []
    for name in methods or list(METHODS):
        spec = METHODS[name]
        shipped = [m for m in zoo.available() if m.kind == "codec" and m.config.get("method") == name
                   and m.path.is_relative_to(zoo.SHIPPED)]
        if not shipped:
            if methods:
                raise SystemExit(f"no shipped model of method {name}")
            continue
        codec = pipeline.load_codec(method=name, device="cpu")
        for task in ("recon", "semseg"):
            if task not in {t.name.lower() for t in spec.tasks}:
                continue
            tasknet = None
            if task != "recon" and not spec.adapter:
                tasknet = pipeline.load_tasknet(task, device="cpu")
            out.append({"method": name, "model": codec.config.get("name"), "task": task, "codec": codec,
                        "tasknet": tasknet})
    return out


def forgeries(n: int, cli_sample: int, work: Path, photo: np.ndarray, methods: list[str] | None = None) -> dict:
    import bitstream
    from icmcodec import pipeline
    from icmcodec.bench.forge import mutations
    from icmcodec.entropy import CorruptStreamError

    sets = fuzz_sets(methods)
    per_set, results, sample = -(-n // len(sets)), {}, []
    for k, fs in enumerate(sets):
        enc = dict(task=fs["task"], codec=fs["codec"], tasknet=fs["tasknet"])
        a = pipeline.encode_image(photo[:96, :128], quality=1.0, **enc)
        b = pipeline.encode_image(photo[-80:, -200:], quality=2.5, **enc)
        fs["file"] = a
        assert pipeline.decode_bytes(a, device="cpu").task == fs["task"]  # the source file itself decodes
        outcome, bugs, kinds, rejected = Counter(), Counter(), Counter(), Counter()
        times = []
        count = min(per_set, n - k * per_set)
        for i, (kind, data) in zip(range(count), mutations(a, b, np.random.default_rng(2026 + k))):
            kinds[kind.split(":")[0]] += 1
            t = time.perf_counter()
            try:
                pipeline.decode_bytes(data, device="cpu")
                outcome["decoded"] += 1
            except (bitstream.BitstreamError, CorruptStreamError, pipeline.UsageError) as e:
                outcome["rejected"] += 1
                rejected[e.__class__.__name__] += 1
            except Exception as e:  # noqa: BLE001 - counting bugs is the point
                outcome["other exception"] += 1
                bugs[f"{kind}: {e.__class__.__name__}: {str(e)[:120]}"] += 1
            times.append((time.perf_counter() - t, kind))
            if (k * per_set + i) % max(1, n // cli_sample) == 0 and len(sample) < cli_sample:
                sample.append(data)
        secs = sorted(t for t, _ in times)
        results[f"{fs['method']} {fs['model']} {fs['task']}"] = {
            "forged": count, "outcomes": dict(outcome), "bugs": dict(bugs), "rejected_as": dict(rejected),
            "kinds": dict(kinds), "seconds_total": round(sum(secs), 1),
            "seconds_median": round(secs[len(secs) // 2], 4) if secs else None,
            "slowest": [[round(t, 3), kind] for t, kind in sorted(times, reverse=True)[:5]]}
        print(json.dumps({k2: v for k2, v in results.items() if k2.startswith(fs["method"])}), file=sys.stderr,
              flush=True)
    cli = Counter()
    for k, data in enumerate(sample):
        f = work / f"forged{k}.icm"
        f.write_bytes(data)
        r = subprocess.run([*icm_command(), "decode", str(f), "--out-dir", str(work / f"forged{k}")],
                           capture_output=True, text=True)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        clean = r.returncode in (0, 2) and len(lines) <= 1 and "internal error" not in r.stderr
        cli["clean" if clean else f"exit {r.returncode}: {r.stderr[:100]}"] += 1
    total = Counter()
    for r in results.values():
        total.update(r["outcomes"])
    return {"forged": n, "outcomes": dict(total), "per_file": results, "cli_sample": dict(cli),
            "sets": [{k2: fs[k2] for k2 in ("method", "model", "task")} | {"file": fs["file"]} for fs in sets]}


HUGE_WORKER = r"""
import sys, time
from icmcodec import pipeline
data = open(sys.argv[1], "rb").read()
t = time.perf_counter()
import bitstream
from icmcodec.entropy import CorruptStreamError
try:
    pipeline.decode_bytes(data, device="cpu")
    out = "decoded"
except (bitstream.BitstreamError, CorruptStreamError, pipeline.UsageError) as e:
    out = "rejected " + e.__class__.__name__ + ": " + str(e)[:150]
except Exception as e:
    out = "bug " + e.__class__.__name__ + ": " + str(e)[:150]
print(round(time.perf_counter() - t, 2), out)
"""


def forged_huge_pictures(sets: list[dict], work: Path, seconds: float, rss_mb: float, side: int = 8192) -> dict:
    """Each source file forged to claim a ``side`` x ``side`` picture, decoded in its
    own process under a time limit."""
    import struct

    import bitstream
    from icmcodec.bench.forge import join, split

    out = {}
    for k, fs in enumerate(sets):
        fixed, chunks = split(fs["file"])
        f = bytearray(fixed)
        struct.pack_into("<IIII", f, 36, side, side, *bitstream.coded_size(side, side))
        for variant, cs in (("payloads kept", chunks), ("payloads emptied", [(t, fl, b"") for t, fl, _ in chunks])):
            path = work / f"huge{k}-{variant.split()[1]}.icm"
            path.write_bytes(join(bytes(f), cs))
            bitstream.unpack(path.read_bytes())  # a valid container
            rss, stdout, code, err = run_measured([sys.executable, "-c", HUGE_WORKER, str(path)], timeout=seconds)
            secs, _, what = stdout.strip().partition(" ")
            ok = code == 0 and rss <= rss_mb and what.startswith(("decoded", "rejected"))
            out[f"{fs['method']} {fs['model']} {fs['task']}, {variant}"] = {
                "outcome": what if code == 0 else f"exit {code}: {err.splitlines()[-1][:200] if err else ''}",
                "seconds": float(secs) if code == 0 else None, "peak_rss_mb": round(rss), "within_bounds": ok}
            print(json.dumps(out), file=sys.stderr, flush=True)
    return {"side": side, "bounds": {"seconds": seconds, "peak_rss_mb": rss_mb}, "files": out}


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
    rss, _, code, err = run_measured([*icm_command(), "decode", str(path), "-o", str(work / "huge.png")])
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
    p.add_argument("--skip-coding", action="store_true", help="run only the forgeries (sections 1 and 2)")
    p.add_argument("--methods", help="comma-separated methods to forge files of (default: every method with a "
                                     "shipped model)")
    p.add_argument("--huge-seconds", type=float, default=300.0, help="time bound of a forged huge picture's decode")
    p.add_argument("--huge-rss-mb", type=float, default=4096.0, help="memory bound of the same")
    a = p.parse_args(argv)
    from icmcodec.imageio import load_rgb

    photo = load_rgb(a.photo)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()] if a.methods else None
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "photo": a.photo}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.time()
        res["forgeries"] = forgeries(a.forgeries, a.cli_sample, work, photo, methods)
        res["forgeries"]["seconds"] = round(time.time() - t)
        sets = res["forgeries"].pop("sets")
        print(json.dumps(res["forgeries"]), file=sys.stderr, flush=True)
        res["forged_huge_pictures"] = forged_huge_pictures(sets, work, a.huge_seconds, a.huge_rss_mb)
        res["forged_1x1_to_4096"] = forged_huge_coded(work)
        print(json.dumps(res["forged_1x1_to_4096"]), file=sys.stderr, flush=True)
        if not a.skip_coding:
            uhd = work / "uhd.png"
            Image.fromarray(np.asarray(Image.fromarray(photo).resize((3840, 2160), Image.LANCZOS))).save(
                uhd, compress_level=1)
            res["3840x2160"] = coding_runs(uhd, work, ["tiled", "whole"], a.repeat, a.quality)
            print(json.dumps(res["3840x2160"]), file=sys.stderr, flush=True)
        if not a.skip_8k and not a.skip_coding:
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
