"""Cut several same-size crops from each picture of a folder, for timing the RD benchmark.

    python benchmarks/crops.py ../shared/data/photos /tmp/photos24 --per-image 3 --size 768x512
    python benchmarks/rd.py /tmp/photos24 --out benchmarks/results/photos24-768x512

Portrait pictures are turned on their side first. The crops sit on the vertical centre and
are spread from the left edge to the right edge. They are written as lossless PNG, so the
benchmark reads exactly these pixels. The 8 validation photos give 24 crops of 768x512,
which is the size of the timing target in issue 3.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from icmcodec.imageio import IMAGE_SUFFIXES, load_rgb


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--per-image", type=int, default=3)
    p.add_argument("--size", default="768x512", help="WxH")
    a = p.parse_args(argv)
    w, h = map(int, a.size.lower().split("x"))
    a.out.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(x for x in a.folder.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES):
        img = load_rgb(f)
        if img.shape[0] > img.shape[1]:
            img = img.transpose(1, 0, 2)
        H, W = img.shape[:2]
        if H < h or W < w:
            print(f"skipped {f.name}: {W}x{H} is smaller than {w}x{h}")
            continue
        y = (H - h) // 2
        for i, x in enumerate(np.linspace(0, W - w, a.per_image).round().astype(int)):
            Image.fromarray(np.ascontiguousarray(img[y : y + h, x : x + w])).save(a.out / f"{f.stem}_{i}.png")
            n += 1
    print(f"wrote {n} crops of {w}x{h} to {a.out}")


if __name__ == "__main__":
    main()
