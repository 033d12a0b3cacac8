"""Large pictures, every method: peak memory and time of ``icm encode`` / ``icm decode``.

    python benchmarks/large.py ../shared/data/photos/005.webp --out benchmarks/results/large.json

Each run is the installed ``icm`` command in its own process, started by a bare
interpreter that reports the peak RSS from ``wait4`` (``hostile.run_measured``), so a
figure is what a user's process peaks at: the interpreter, torch, timm and the models
(about 0.8-0.95 GB before any picture) plus the work. Pictures: the photo resized to
3840x2160, and the photo mirrored and repeated to 8192x8192 (real content at native
scale; ``hostile.big_picture``). Each configuration is one method and task at the
model's default quality; results are written after every run, so a long run that is
stopped keeps what it measured.

``--agreement`` also measures how far a dense task network run in tiles
(:mod:`icmcodec.tasks.tiled`) is from one run over the whole 3840x2160 picture (padded
to the tiles' 32-pixel grid, the output cropped back): the share of pixels with the
same class.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from hostile import big_picture, run_measured  # noqa: E402

CONFIGS = {
    "hyperprior recon": ["--method", "hyperprior", "--task", "recon"],
    "hyperprior semseg": ["--method", "hyperprior", "--task", "semseg"],
    "transtic semseg": ["--method", "transtic", "--task", "semseg"],
    "prompt-icm semseg": ["--method", "prompt-icm", "--task", "semseg"],
    "prompt-icm cls": ["--method", "prompt-icm", "--task", "cls"],
    "dora-icm semseg": ["--method", "dora-icm", "--task", "semseg"],
    "mpa cls": ["--method", "mpa", "--task", "cls"],
}


def icm(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli.main import main; main()", *args]


def measure(img: Path, work: Path, name: str, opts: list[str]) -> dict:
    f = work / f"{img.stem}-{name.replace(' ', '-')}.icm"
    row = {}
    for what, cmd in (("encode", icm("encode", str(img), *opts, "-o", str(f))),
                      ("decode", icm("decode", str(f), "--out-dir", str(work / "out")))):
        t = time.perf_counter()
        rss, out, code, err = run_measured(cmd)
        row[what] = {"peak_rss_mb": round(rss), "seconds": round(time.perf_counter() - t, 1), "exit": code,
                     "line": (out.strip() or err.strip()).splitlines()[-1][:300] if (out.strip() or err.strip()) else ""}
        if code:
            break
    if f.exists():
        row["bytes"] = f.stat().st_size
    return row


def agreement(uhd: np.ndarray, configs=((512, 192), (768, 192), (1024, 256))) -> dict:
    """The semseg network in tiles of each (tile, halo) against one run over the whole
    picture, padded to the tiles' grid and not; with the process's peak RSS after each
    tiling (in growing order, so each peak is that tiling's)."""
    import resource

    import torch

    from icmcodec import pipeline
    from icmcodec.tasks import tiled
    from icmcodec.tasks.predict import to_tensor

    net = pipeline.load_tasknet("semseg", device="cpu")
    h, w = uhd.shape[:2]
    grid = (-(-h // tiled.ALIGN) * tiled.ALIGN, -(-w // tiled.ALIGN) * tiled.ALIGN)
    out = {"task network": "semseg-camvid-lite0", "shipped": [tiled.TILE, tiled.HALO]}
    with torch.no_grad():
        for tile, halo in configs:  # before the whole runs, so that their peak is not in these figures
            t = time.perf_counter()
            res = tiled.predict_tiled(lambda y0, y1, x0, x1: net.net(to_tensor(tiled.padded_tile(uhd, y0, y1, x0, x1))[None])[0],
                                      (h, w), grid, net.spec.postprocess, tile=tile, halo=halo)
            out[f"tile {tile}, halo {halo}"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb":
                                                round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            out[f"tile {tile}, halo {halo}"]["output"] = res
        ref = net.spec.postprocess(net.net(to_tensor(tiled.padded_tile(uhd, 0, grid[0], 0, grid[1]))[None])[0, :, :h, :w]
                                   .numpy())
        plain = net.spec.postprocess(net.logits([uhd])[0])
    for k, v in out.items():
        if isinstance(v, dict):
            res = v.pop("output")
            v["same class as one run over the padded picture"] = round(float((res == ref).mean()), 4)
            v["same class as one run over the unpadded picture"] = round(float((res == plain).mean()), 4)
    out["padded vs unpadded one-run"] = round(float((ref == plain).mean()), 4)
    return out


def main(argv=None) -> None:
    from PIL import Image

    from icmcodec.imageio import load_rgb

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo")
    p.add_argument("--out", type=Path)
    p.add_argument("--configs", default="hyperprior recon,transtic semseg,prompt-icm semseg,prompt-icm cls",
                   help=f"comma-separated, of: {', '.join(CONFIGS)}")
    p.add_argument("--configs-8k", default="hyperprior recon,transtic semseg,prompt-icm semseg")
    p.add_argument("--agreement", action="store_true")
    a = p.parse_args(argv)
    photo = load_rgb(a.photo)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "photo": a.photo}

    def save():
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uhd = np.asarray(Image.fromarray(photo).resize((3840, 2160), Image.LANCZOS))
        Image.fromarray(uhd).save(work / "uhd.png", compress_level=1)
        Image.fromarray(big_picture(photo, 8192, 8192)).save(work / "8k.png", compress_level=1)
        if a.agreement:
            res["tiled task network"] = agreement(uhd)
            print(json.dumps(res["tiled task network"]), file=sys.stderr, flush=True)
            save()
        for size, img, configs in (("3840x2160", "uhd.png", a.configs), ("8192x8192", "8k.png", a.configs_8k)):
            for name in filter(None, configs.split(",")):
                res.setdefault(size, {})[name] = measure(work / img, work, name, CONFIGS[name])
                print(size, name, json.dumps(res[size][name]), file=sys.stderr, flush=True)
                save()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
