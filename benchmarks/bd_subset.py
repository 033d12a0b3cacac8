"""BD-rate of one curve of a rate-accuracy result, over some of its qualities only.

    python benchmarks/bd_subset.py benchmarks/results/ra-semseg-prompt-icm/ra.json \\
        --curve icm-picm-lite0 --qualities 0,1,2,3,4

A method's curve spans its whole quality range; part of that range may be extrapolated
(Prompt-ICM's task sets were trained at qualities 0..4, the range goes down to -4). This
recomputes the BD-rate and BD-metric of ``--curve`` restricted to the measured points at
``--qualities`` against every other curve of the same run (no coding: the points are the
run's own), with the same ``bjontegaard`` (pchip) computation as ``ra.py``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from icmcodec.bench.ra import bd_pair


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks/bd_subset.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ra_json", type=Path)
    p.add_argument("--curve", required=True)
    p.add_argument("--qualities", required=True, help="comma-separated qualities of --curve to keep")
    a = p.parse_args(argv)
    doc = json.loads(a.ra_json.read_text())
    keep = {float(q) for q in a.qualities.split(",")}
    pts = [pt for pt in doc["curves"][a.curve] if float(pt["quality"]) in keep]
    if len(pts) < 4:
        raise SystemExit(f"error: {len(pts)} of the asked qualities are in {a.curve}; BD needs at least 4")
    sign = 1.0 if doc["meta"].get("higher_is_better", True) else -1.0
    m = doc["meta"]["metric"]
    print(f"{a.curve} at qualities {sorted(keep)}: {min(p['bpp'] for p in pts):.3f}..{max(p['bpp'] for p in pts):.3f} bpp")
    print(f"| {a.curve} (subset) vs | BD-rate | BD-{m} |\n|---|---|---|")
    for name, ref in doc["curves"].items():
        if name == a.curve:
            continue
        v = bd_pair(ref, pts, sign)
        br = "n/a (no overlap)" if v["bd_rate"] is None else f"{v['bd_rate']:+.1f} %"
        bm = "n/a (no overlap)" if v["bd_metric"] is None else f"{v['bd_metric']:+.4f}"
        print(f"| {name} | {br} | {bm} |")


if __name__ == "__main__":
    main()
