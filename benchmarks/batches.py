"""Sharded and interrupted batches through the installed ``icm`` command (issue 15).

    python benchmarks/batches.py ../shared/data/photos --out benchmarks/results/batches.json

With the shipped default model, on copies of the given pictures (``--copies`` of each,
in sub-folders, so the shard hash sees distinct relative paths):

1. one unsharded ``icm encode DIR --out-dir all``;
2. ``--shard 1/3``, ``2/3`` and ``3/3`` into one folder, each with its own manifest:
   every input must appear in exactly one manifest, and the folder must equal ``all``
   byte for byte;
3. a run killed with SIGKILL once half of its outputs exist, then rerun with
   ``--skip-existing``: the folder must equal ``all`` byte for byte, no output may be
   partial, and the killed run's manifest must still be whole JSON lines.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ICM = [sys.executable, "-c", "from cli.main import main; main()"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.icm"))}


def icm(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ICM, *map(str, args)], capture_output=True, text=True, **kw)


def main(argv=None) -> None:
    from icmcodec.imageio import IMAGE_SUFFIXES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pictures", type=Path)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--quality", default="2")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="icm-batches-"))
    try:
        src = work / "in"
        pics = sorted(f for f in a.pictures.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for c in range(a.copies):
            (src / f"c{c}").mkdir(parents=True)
            for f in pics:
                shutil.copy(f, src / f"c{c}" / f.name)
        n = len(pics) * a.copies
        res = {"inputs": n}

        t = time.perf_counter()
        r = icm("encode", src, "--out-dir", work / "all", "--quality", a.quality)
        res["unsharded"] = {"exit": r.returncode, "seconds": round(time.perf_counter() - t, 1)}
        ref = tree(work / "all")

        listed = []
        for k in (1, 2, 3):
            r = icm("encode", src, "--out-dir", work / "sharded", "--quality", a.quality, "--shard", f"{k}/3",
                    "--manifest", work / f"shard{k}.jsonl")
            lines = [json.loads(x) for x in (work / f"shard{k}.jsonl").read_text().splitlines()]
            listed += [rec["input"] for rec in lines]
            res[f"shard {k}/3"] = {"exit": r.returncode, "inputs": len(lines)}
        res["shards"] = {"every input exactly once": sorted(listed) == sorted(set(listed)) and len(listed) == n,
                         "union equals unsharded, byte for byte": tree(work / "sharded") == ref}

        cmd = [*ICM, "encode", str(src), "--out-dir", str(work / "run"), "--quality", a.quality,
               "--manifest", str(work / "run.jsonl")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and len(list((work / "run").rglob("*.icm")) if (work / "run").exists() else []) < n // 2:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = len(list((work / "run").rglob("*.icm")))
        partial = [str(f.relative_to(work)) for f in (work / "run").rglob("*") if f.name.endswith(".part")]
        whole = True
        for line in (work / "run.jsonl").read_text().splitlines():
            try:
                json.loads(line)
            except ValueError:
                whole = False
        r = icm("encode", src, "--out-dir", work / "run", "--quality", a.quality, "--skip-existing",
                "--manifest", work / "run.jsonl")
        res["killed"] = {"outputs when killed": done, "temporary files left by the kill": partial,
                         "manifest whole lines": whole, "rerun exit": r.returncode,
                         "rerun says": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "",
                         "resumed equals clean run, byte for byte": tree(work / "run") == ref,
                         "icm outputs after the rerun": len(tree(work / "run"))}
        print(json.dumps(res, indent=1))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
