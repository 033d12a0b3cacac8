"""Odd command lines, every method: each must end in one line and a defined exit, in time.

    python benchmarks/cli_fuzz.py --out benchmarks/results/cli-fuzz.json

The installed ``icm`` (``python -m cli.main``) runs each case in its own process with a
time limit: option edge values (budgets, qualities, shards, batches, devices, tasks,
methods) for every shipped method, and inputs that are not pictures or not files (a
named pipe with no writer, a character device, an empty file, text named .png, a cut
PNG, a folder holding a pipe, a missing path), for encode, decode and info. A case is
*clean* when it exits 0, 1 or 2, prints no traceback and no "internal error", and every
failure is one line on stderr; a *hang* is a case still running at the limit (killed).
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
from pathlib import Path

import numpy as np

METHODS = {"hyperprior": "semseg", "transtic": "semseg", "prompt-icm": "semseg"}


def cases(d: Path) -> list[tuple[str, list[str]]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(d / "p.png")
    os.mkfifo(d / "fifo.png")
    os.mkfifo(d / "fifo.icm")
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not a picture\n")
    (d / "cut.png").write_bytes((d / "p.png").read_bytes()[:200])
    (d / "junk.icm").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (d / "dir").mkdir()
    os.mkfifo(d / "dir" / "q.png")
    (d / "list.txt").write_text(f"{d / 'fifo.png'}\n{d / 'p.png'}\n")
    p, out = str(d / "p.png"), str(d / "o.icm")
    out_cases: list[tuple[str, list[str]]] = []
    for method, task in METHODS.items():
        base = ["encode", p, "--method", method, "--task", task, "-o", out]
        for v in ("1e308", "inf", "1e309", "nan", "-1", "0", "1e-300", "0.0001", "abc", "2"):
            out_cases.append((f"{method} --bpp {v}", base + ["--bpp", v]))
        for v in ("99999999999999999999", "1e9", "abc", "-5", "0", "91", "92", "100000"):
            out_cases.append((f"{method} --max-bytes {v}", base + ["--max-bytes", v]))
        for v in ("0x10", "nan", "inf", "-1e9", "1e9", "abc", "-4", "4"):
            out_cases.append((f"{method} --quality {v}", base + ["--quality", v]))
    enc = ["encode", p, "-o", out]
    for opt, vals in (("--shard", ("0/3", "4/3", "a/b", "1/0", "1/1")), ("--batch", ("0", "999", "x")),
                      ("--device", ("cuda", "tpu")), ("--task", ("bogus", "recon")), ("--method", ("bogus",)),
                      ("--model", ("no-such-model",))):
        for v in vals:
            out_cases.append((f"encode {opt} {v}", enc + [opt, v]))
    out_cases += [("encode --unknown", enc + ["--unknown"]), ("encode no input", ["encode"]),
                  ("encode both outputs", enc + ["--out-dir", str(d / "od")])]
    for name in ("fifo.png", "empty.png", "text.png", "cut.png", "missing.png", "dir"):
        out_cases.append((f"encode {name}", ["encode", str(d / name), "--out-dir", str(d / "od")]))
    out_cases.append(("encode /dev/zero", ["encode", "/dev/zero", "-o", out]))
    out_cases.append(("encode a list with a pipe", ["encode", "-", "--out-dir", str(d / "od2"), "<", str(d / "list.txt")]))
    for name in ("fifo.icm", "junk.icm", "missing.icm", "dir"):
        out_cases.append((f"decode {name}", ["decode", str(d / name), "--out-dir", str(d / "dd")]))
        out_cases.append((f"info {name}", ["info", str(d / name)]))
    out_cases += [("decode /dev/zero", ["decode", "/dev/zero"]), ("info /dev/zero", ["info", "/dev/zero"]),
                  ("decode --task bogus", ["decode", str(d / "junk.icm"), "--task", "bogus"])]
    return out_cases


def run(args: list[str], limit: float) -> dict:
    stdin = None
    if "<" in args:
        i = args.index("<")
        stdin, args = open(args[i + 1], "rb"), args[:i]
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                           timeout=limit, stdin=stdin if stdin else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"outcome": "hang", "seconds": limit}
    finally:
        if stdin:
            stdin.close()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    bad = r.returncode not in (0, 1, 2) or "Traceback" in r.stderr or "internal error" in r.stderr
    failures = [ln for ln in lines if "error" in ln.lower()]
    one_line = r.returncode == 0 or r.returncode == 1 or len(failures) == 1
    return {"outcome": "clean" if not bad and one_line else "bug", "exit": r.returncode,
            "stderr": lines[-3:], "seconds": round(time.perf_counter() - t, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--limit", type=float, default=120.0, help="seconds before a case counts as a hang")
    a = ap.parse_args(argv)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases(Path(tmp)):
            res["cases"][name] = run(args, a.limit)
            print(name, json.dumps(res["cases"][name]), file=sys.stderr, flush=True)
    counts: dict[str, int] = {}
    for c in res["cases"].values():
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    res["summary"] = {"cases": len(res["cases"]), **counts}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["summary"]))


if __name__ == "__main__":
    main()
