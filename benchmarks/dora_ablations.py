"""DoRA-ICM's ablations on semseg (the paper's Fig. 5), as short runs of one trainer.

    python benchmarks/dora_ablations.py ../shared/data/camvid --runs runs/dora-abl \\
        --out benchmarks/results/dora-ablations --steps 700

Every variant trains for the same number of steps with the same data, crops, batch,
learning rate and quality levels, from the same seed, and differs in one thing:

| variant | what changes |
|---|---|
| ``dora-r8`` | the method's default: DoRA, rank 8, on the pointwise convolutions at 1/16 |
| ``lora-r8`` | LoRA on the same layers at the same rank (no magnitude vector: 3 % fewer parameters) |
| ``fixed`` | the fixed pre-trained backbone, no adapters |
| ``no-intersup`` | DoRA r8 without the preliminary prediction's loss |
| ``dora-r16`` | DoRA, rank 16 |

Each is then measured on every 4th CamVid val frame at every trained quality level: the
estimated rate (the entropy model's likelihoods, as training sees it, not real files) and
the mIoU of the decoder's output; the table gives each variant's BD-rate against
``dora-r8``. These are CPU-sized runs (700 steps of batch 4 and 256 crops, 6 minutes
each on 2 idle cores), so they
compare variants with each other, not with the shipped set (trained on a GPU). A variant
whose run exists in ``--runs`` is not retrained (delete it to redo).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

VARIANTS = {
    "dora-r8": [],
    "lora-r8": ["--config", '{"dora": false}'],
    "fixed": ["--no-adapters"],
    "no-intersup": ["--prelim-weight", "0"],
    "dora-r16": ["--config", '{"rank": 16, "alpha": 16}'],
}
LEVELS = '{"levels": 4, "lambdas": [0.3, 1.0, 3.0, 10.0]}'


def evaluate(run: Path, data: str) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from icmcodec.methods.dora_icm.model import DoraIcm, DoraIcmConfig, build_backbone
    from icmcodec.tasks.backbone import input_stats
    from icmcodec.tasks.registry import task as task_spec
    from icmcodec.training import rd_bpp

    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    cfg = DoraIcmConfig.from_dict(ck["config"])
    model = DoraIcm(cfg, build_backbone(cfg, "registry"), *input_stats(cfg.backbone))
    if any(".lora_" in k for k in ck["model"]):
        model.encoder.adapt()
    model.load_state_dict(ck["model"])
    model.eval()
    spec = task_spec("semseg")
    samples = spec.dataset(data, "val")[::4]
    points = []
    for level in range(cfg.levels):
        metric, bpps = spec.metric(spec.labels), []
        for s in samples:
            img = s.image()
            h, w = img.shape[:2]
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            x = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
            with torch.no_grad():
                out = model(x, torch.tensor([level]))
            bpps.append(rd_bpp(out, h * w).item())
            metric.update(out["logits"][0, :, :h, :w].argmax(0).numpy(), np.asarray(s.label))
        points.append({"level": level, "bpp": float(np.mean(bpps)), "miou": metric.value()})
    return points


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=700, help="training steps of every variant (the same for all)")
    p.add_argument("--minutes", type=float, default=None,
                   help="a wall-clock budget instead of --steps (then variants differ in steps on a busy machine)")
    p.add_argument("--table", action="store_true", help="print the table of the stored results only")
    p.add_argument("--only", default=None, help="comma-separated variants")
    a = p.parse_args(argv)
    from icmcodec.bench.measure import bd_rate
    from icmcodec.methods.dora_icm import train

    names = a.only.split(",") if a.only else list(VARIANTS)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "ablations.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in [] if a.table else names:
        run = Path(a.runs) / name
        if not (run / "last.pt").exists():
            budget = ["--steps", "20000", "--time-budget", str(a.minutes)] if a.minutes else ["--steps", str(a.steps)]
            args = ["--task", "semseg", "--data", a.data, "--run", str(run), *budget, "--batch", "4",
                    "--crop", "256", "--threads", "1", "--save-every", "100000", "--device", "cpu"]
            extra = VARIANTS[name]
            cfg = json.loads(LEVELS)
            if extra[:1] == ["--config"]:
                cfg.update(json.loads(extra[1]))
                extra = []
            train.main(args + ["--config", json.dumps(cfg)] + extra)
        import torch

        steps = int(torch.load(run / "last.pt", map_location="cpu", weights_only=False)["step"])
        results[name] = {"points": evaluate(run, a.data), "run": str(run), "args": VARIANTS[name], "steps": steps}
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(name, results[name]["points"], file=sys.stderr)
    base = results.get("dora-r8")
    print("| variant | steps | BD-rate vs dora-r8 | mIoU at the levels (bpp) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        pts = r["points"]
        bd = None if base is None or name == "dora-r8" else bd_rate(
            ([q["bpp"] for q in base["points"]], [q["miou"] for q in base["points"]]),
            ([q["bpp"] for q in pts], [q["miou"] for q in pts]))
        curve = ", ".join(f"{q['miou']:.3f} ({q['bpp']:.3f})" for q in pts)
        if "steps" not in r and (Path(r["run"]) / "last.pt").exists():
            import torch

            r["steps"] = int(torch.load(Path(r["run"]) / "last.pt", map_location="cpu", weights_only=False)["step"])
        print(f"| {name} | {r.get('steps', '?')} | {'-' if bd is None else f'{bd:+.1f} %'} | {curve} |")


if __name__ == "__main__":
    main()
