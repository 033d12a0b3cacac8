"""Prompt-ICM's compression prompts on real pictures: picture | importance map | bits.

    python benchmarks/picm_maps.py ../shared/data/camvid --task semseg --count 4 \\
        --out benchmarks/results/prompt-icm/maps-semseg.png

For ``--count`` pictures spread over a task's val split: the picture, the importance map
the task's information selector generates, as relative importance (divided by its mean;
white = the most important place of that picture; the map the feature codec is steered by,
before the quality scales it) and where the file's latent actually spends
its bits at ``--quality`` (from the exact tables, ``PromptIcmCodec.bits_map``), side by side
in one PNG; the bpp of the real file is printed under each row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path



def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks/picm_maps.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path)
    p.add_argument("--task", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--model", default=None, help="prompt-icm base (default: the installed one)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--quality", type=float, default=2.0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from icmcodec import pipeline
    from icmcodec.bench.ra import spread
    from icmcodec.tasks.registry import task as task_spec

    spec = task_spec(a.task)
    codec = pipeline.load_codec(a.model, method="prompt-icm", device="cpu")
    codec = codec.bound(pipeline.load_adapter(codec, a.task))
    samples = spread(spec.dataset(a.data, a.split), a.count)
    fig, axes = plt.subplots(len(samples), 3, figsize=(10, 2.6 * len(samples)), dpi=100, squeeze=False)
    with torch.no_grad():
        for row, s in zip(axes, samples):
            rgb = s.image()
            h, w = rgb.shape[:2]
            an = codec.analyse(rgb)
            m = an.at(a.quality)[0, 0].cpu().numpy()[:-(-h // 4), :-(-w // 4)]
            bits = codec.bits_map(an, a.quality)[:-(-h // 16), :-(-w // 16)]
            data = pipeline.encode_image(rgb, task=a.task, quality=a.quality, codec=codec)
            bpp = 8 * len(data) / (h * w)
            for ax, img, title in ((row[0], rgb, s.name), (row[1], m, f"relative importance (0 to {m.max():.1f})"),
                                   (row[2], bits, f"bits per latent position ({bpp:.3f} bpp file)")):
                ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0 if img is m else None,
                          interpolation="nearest")
                ax.set_title(title, fontsize=8)
                ax.axis("off")
            print(f"{s.name}: map mean {m.mean():.3f}, {bpp:.4f} bpp at quality {a.quality:g}", file=sys.stderr)
    fig.suptitle(f"Prompt-ICM, {a.task}: the selector's importance map and where the bits go "
                 f"(quality {a.quality:g})", fontsize=10)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
