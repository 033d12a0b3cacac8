"""Our saliency metric against the maintained implementation (``py_sod_metrics``).

    pip install pysodmetrics    # in any environment with numpy and pillow
    PYTHONPATH=. python benchmarks/saliency_metric.py ../shared/data/sod --out benchmarks/results/saliency-metric.json

Predictions: for each SOD val mask, three maps of different quality made from the mask
itself (blurred; blurred and shifted; noise mixed in: seeded), and, with
``--predictions DIR``, the 8-bit maps a network wrote there (``<stem>.saliency.png``).
Each set is scored by :class:`icmcodec.tasks.metrics.SaliencyMaxF` (fed the same 8-bit
maps, as probabilities) and by ``py_sod_metrics.Fmeasure`` (max of the mean F curve)
and ``py_sod_metrics.MAE``; the JSON records both and their largest difference.
Needs numpy, scipy and pillow, not torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def synthetic(mask: np.ndarray, kind: str, rng) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    if kind == "blurred":
        return np.asarray(img.filter(ImageFilter.GaussianBlur(6)))
    if kind == "shifted":
        return np.roll(np.asarray(img.filter(ImageFilter.GaussianBlur(10))), (15, -20), (0, 1))
    noise = rng.random(mask.shape) * 255
    return np.clip(0.6 * np.asarray(img.filter(ImageFilter.GaussianBlur(3))) + 0.4 * noise, 0, 255).astype(np.uint8)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sod", type=Path, help="SOD root (val masks in VAL/<id>.png)")
    p.add_argument("--split", default="val")
    p.add_argument("--predictions", type=Path, help="a folder of <stem>.saliency.png maps to score too")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*will be removed.*")
    import py_sod_metrics

    from icmcodec.tasks.metrics import SaliencyMaxF

    masks = {m.stem: np.asarray(Image.open(m).convert("L")) for m in sorted((a.sod / a.split).glob("*.png"))}
    rng = np.random.default_rng(0)
    sets = {k: {s: synthetic(m > 127, k, rng) for s, m in masks.items()} for k in ("blurred", "shifted", "noisy")}
    if a.predictions:
        sets["network"] = {s: np.asarray(Image.open(a.predictions / f"{s}.saliency.png").convert("L"))
                           for s in masks}
    rows = {}
    for name, preds in sets.items():
        ours, fm, mae = SaliencyMaxF(), py_sod_metrics.Fmeasure(), py_sod_metrics.MAE()
        for s, m in masks.items():
            ours.update(preds[s] / 255.0, m > 127)
            fm.step(pred=preds[s], gt=m)
            mae.step(pred=preds[s], gt=m)
        ref_f = float(fm.get_results()["fm"]["curve"].max())
        ref_mae = float(mae.get_results()["mae"])
        rows[name] = {"ours": {"max_f": ours.value(), "mae": ours.mae()},
                      "py_sod_metrics": {"max_f": ref_f, "mae": ref_mae},
                      "difference": {"max_f": ours.value() - ref_f, "mae": ours.mae() - ref_mae}}
        print(f"{name:8s} max-F {ours.value():.6f} (py_sod_metrics {ref_f:.6f}), MAE {ours.mae():.6f} "
              f"(py_sod_metrics {ref_mae:.6f})")
    doc = {"pictures": len(masks), "split": a.split, "py_sod_metrics": py_sod_metrics.__version__
           if hasattr(py_sod_metrics, "__version__") else "unknown", "sets": rows,
           "largest_difference": max(abs(v) for r in rows.values() for v in r["difference"].values())}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"largest difference {doc['largest_difference']:.2e}; wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
