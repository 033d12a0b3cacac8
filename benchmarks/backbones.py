"""Choosing the pre-trained backbone: accuracy against CPU time (issue 11).

    python benchmarks/backbones.py ../shared/data/caltech101 --out benchmarks/results/backbones.json

For each installed EfficientNet-Lite (``icmcodec.tasks.pretrained.LITE``): parameters of
the feature extractor (``features_only``), CPU seconds per picture at its native input
size (batch 1, median of 50 runs in 5 rounds that alternate the backbones, all threads), and a frozen-feature
linear probe on Caltech-101 (train 1515 -> val 505): globally pooled features of the last
stage (``features_only``'s 32x output) and of the 1x1 head convolution (1280 channels),
multinomial logistic regression (L-BFGS, L2 weight chosen among three on val). The
probe measures the features, not a fine-tuned network: it is what decides the pick.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from icmcodec.tasks.datasets import image_folder
from icmcodec.tasks.predict import center_view, to_tensor
from icmcodec.tasks.pretrained import LITE, LITE_MEAN, LITE_STD, PretrainedError, load_lite_state


@torch.no_grad()
def features(net, samples, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(last-stage pooled, head-conv pooled) features of every sample."""
    caught = {}
    hook = net.blocks[-1].register_forward_hook(lambda m, i, o: caught.__setitem__("stage", o))
    mean, std = torch.tensor(LITE_MEAN).view(1, 3, 1, 1), torch.tensor(LITE_STD).view(1, 3, 1, 1)
    a, b = [], []
    for k in range(0, len(samples), 16):
        x = torch.stack([center_view(to_tensor(s.image()), round(size * 1.14), size) for s in samples[k:k + 16]])
        head = net.forward_features((x - mean) / std)
        a.append(caught["stage"].mean((2, 3)))
        b.append(head.mean((2, 3)))
    hook.remove()
    return torch.cat(a).numpy(), torch.cat(b).numpy()


def probe(ftr, ytr, fva, yva) -> dict:
    """Multinomial logistic regression; the L2 weight with the best val top-1."""
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    xt, xv = torch.from_numpy((ftr - mu) / sd).float(), torch.from_numpy((fva - mu) / sd).float()
    yt, yv = torch.from_numpy(ytr), torch.from_numpy(yva)
    best = None
    for wd in (1e-4, 1e-3, 1e-2):
        lin = torch.nn.Linear(xt.shape[1], int(yt.max()) + 1)
        opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=300, history_size=20)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(xt), yt) + wd * lin.weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float((lin(xv).argmax(1) == yv).float().mean())
        if best is None or acc > best["top1"]:
            best = {"top1": acc, "l2": wd}
    return best


@torch.no_grad()
def cpu_seconds(nets: dict, rounds: int = 5, runs: int = 10) -> dict:
    """Median seconds per picture of each ``name: (net, size)``; the networks take turns
    round by round, so a busy machine slows all of them alike and the ratios hold."""
    times = {n: [] for n in nets}
    for net, size in nets.values():
        for _ in range(3):
            net(torch.rand(1, 3, size, size))
    for _ in range(rounds):
        for n, (net, size) in nets.items():
            x = torch.rand(1, 3, size, size)
            for _ in range(runs):
                t0 = time.perf_counter()
                net(x)
                times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}


def main(argv=None) -> None:
    import timm

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("caltech", help="Caltech-101 root (train/ and val/ class folders)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    train, _ = image_folder(a.caltech, "train")
    val, _ = image_folder(a.caltech, "val")
    ytr = np.array([s.label for s in train])
    yva = np.array([s.label for s in val])
    rows, timed = [], {}
    for name, (package, _, _, size) in LITE.items():
        try:
            state = load_lite_state(name)
        except PretrainedError as e:
            print(f"skip {name}: {e}", file=sys.stderr)
            continue
        net = timm.create_model(name, pretrained=False)
        net.load_state_dict(state)
        net.eval()
        feat_net = timm.create_model(name, pretrained=False, features_only=True).eval()
        timed[name] = (feat_net, size)
        fa_tr, fb_tr = features(net, train, size)
        fa_va, fb_va = features(net, val, size)
        row = {"backbone": name, "package": package, "input": size,
               "params_features": sum(q.numel() for q in feat_net.parameters()),
               "probe_last_stage": probe(fa_tr, ytr, fa_va, yva), "probe_head_conv": probe(fb_tr, ytr, fb_va, yva)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    for row, t in zip(rows, cpu_seconds(timed).values()):
        row["cpu_s_per_picture"] = round(t, 4)
    result = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "rows": rows}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
