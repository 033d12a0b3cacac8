"""Choose each task's default method from the stored benchmark results.

``python benchmarks/defaults.py`` reads the rate-accuracy (machine tasks) and
rate-distortion (recon) results listed in ``CANDIDATES`` below, computes every
candidate's BD-rate against the reference path measured in the same result (the
``hyperprior`` method's shipped model, hp-base, feeding the task's clean network; for
recon, hp-base's PSNR curve) and writes ``icmcodec/default_methods.json``: per task the
method with the lowest BD-rate, if it is below 0 (better than the reference), else the
reference itself. ``--check`` recomputes and compares with the file instead (the test
suite does this), so the defaults can only change through a measured result.

A new method becomes a default by adding its measured result here (the result file of
``benchmarks/ra.py`` or ``benchmarks/rd.py``, run on the val split with the model and
adapter that ship) and rerunning this script.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icmcodec.bench.measure import bd_rate  # noqa: E402

OUT = ROOT / "icmcodec" / "default_methods.json"
REFERENCE = "hyperprior"
# task -> candidates: (method, result file, the curve's label in it); every result holds
# the reference curve ("icm-hp-base") measured on the same pictures
CANDIDATES = {
    "recon": [("transtic", "benchmarks/results/photos-768x512-tic/rd.json", "icm")],
    "semseg": [("prompt-icm", "benchmarks/results/ra-semseg-prompt-icm-v2/ra.json", "icm-picm-lite0"),
               ("transtic", "benchmarks/results/ra-semseg-transtic/ra.json", "icm-tic-hybrid"),
               ("dora-icm", "benchmarks/results/ra-semseg-dora-icm/ra.json", "icm-dora-lite0-semseg")],
    "cls": [("prompt-icm", "benchmarks/results/ra-cls-prompt-icm-v2/ra.json", "icm-picm-lite0+picm-cls-slope"),
            ("transtic", "benchmarks/results/ra-cls-transtic/ra.json", "icm-tic-hybrid"),
            ("mpa", "benchmarks/results/ra-cls-mpa/ra.json", "icm-mpa-tic-hybrid~rho0.5")],
    "boundary": [("transtic", "benchmarks/results/ra-boundary-transtic/ra.json", "icm-tic-hybrid"),
                 ("mpa", "benchmarks/results/ra-boundary-mpa/ra.json", "icm-mpa-tic-hybrid~rho1")],
    "saliency": [("dora-icm", "benchmarks/results/ra-saliency-dora-icm/ra.json", "icm-dora-lite0-saliency"),
                 ("prompt-icm", "benchmarks/results/ra-saliency-prompt-icm/ra.json", "icm-picm-lite0")],
}
# recon's reference: hp-base's rate-distortion on the same 8 val photos (its shipped hash)
RECON_REFERENCE = "benchmarks/results/photos-768x512-hp-rerun/rd.json"


def _curve(points: list[dict], metric: str) -> tuple[list[float], list[float]]:
    pts = sorted(points, key=lambda p: p["bpp"])
    return [p["bpp"] for p in pts], [p[metric] for p in pts]


def candidate_bd(task: str, result: str, label: str) -> float:
    """BD-rate (%) of ``label``'s curve against the reference path's, from one result."""
    doc = json.loads((ROOT / result).read_text())
    if task == "recon":
        ref = json.loads((ROOT / RECON_REFERENCE).read_text())["summary"]["icm"]["curve"]
        return bd_rate(_curve(ref, "psnr"), _curve(doc["summary"]["icm"]["curve"], "psnr"))
    metric = "metric"
    return bd_rate(_curve(doc["curves"]["icm-hp-base"], metric), _curve(doc["curves"][label], metric))


def choose() -> dict:
    out: dict = {"_about": "the default method per task (icm encode --task T without --method), written by "
                           "benchmarks/defaults.py from the stored results named here: the lowest BD-rate against "
                           "the reference path (hyperprior: hp-base and the task's clean network; for recon, its "
                           "PSNR curve), if below 0. Tasks not listed have no measurement: hyperprior."}
    for task, cands in CANDIDATES.items():
        scored = {m: {"bd_rate": round(candidate_bd(task, f, lab), 2), "result": f, "curve": lab}
                  for m, f, lab in cands}
        best = min(scored, key=lambda m: scored[m]["bd_rate"])
        method = best if scored[best]["bd_rate"] < 0 else REFERENCE
        out[task] = {"method": method, "metric": "PSNR" if task == "recon" else "task metric",
                     "reference": REFERENCE, "candidates": scored}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare with icmcodec/default_methods.json, write nothing")
    a = p.parse_args(argv)
    doc = choose()
    if a.check:
        stored = json.loads(OUT.read_text())
        if stored != doc:
            print("icmcodec/default_methods.json does not match the stored results; rerun benchmarks/defaults.py")
            return 1
        print("default_methods.json matches the stored results")
        return 0
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    for task, v in doc.items():
        if not task.startswith("_"):
            print(f"{task:9s} {v['method']:11s} " + ", ".join(f"{m} {c['bd_rate']:+.1f} %" for m, c in
                                                         v["candidates"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
