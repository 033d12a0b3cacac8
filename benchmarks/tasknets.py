"""Clean (uncoded) scores, size and cost of the task networks.

    python benchmarks/tasknets.py semseg=../shared/data/camvid boundary=../shared/data/bsds500 \\
        cls=../shared/data/caltech101 --out benchmarks/results/tasknets.json

For each TASK=DATA pair: the task's installed network (or ``--model TASK=NAME``) is run
through the same predict path as ``icm analyze`` on the ``val`` split, and the task
metric is reported with its parameter count, size on disk, multiply-accumulates at the
task's reference input (torch's FLOP counter; FLOPs = 2 x MACs) and CPU time per
picture. Boundaries: ODS with 99 thresholds (the BSDS benchmark's count); the matching
is given with ``--matching`` (``greedy`` by default; ``maximum`` is the slower maximum
bipartite matching; ``bsds`` the BSDS benchmark's own correspondence, through pyedgeeval).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REFERENCE_INPUT = {"semseg": (360, 480), "boundary": (321, 481), "cls": (240, 300)}


def flops(model, hw: tuple[int, int]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x = model.prepare(np.zeros((*hw, 3), np.uint8))[None]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.net(x)
    return int(counter.get_total_flops())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks/tasknets.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="+", metavar="TASK=DATA")
    p.add_argument("--model", action="append", default=[], metavar="TASK=NAME")
    p.add_argument("--split", default="val")
    p.add_argument("--matching", default="greedy", choices=["greedy", "maximum", "bsds"])
    p.add_argument("--thresholds", type=int, default=99, help="boundary: ODS thresholds (the BSDS benchmark: 99)")
    p.add_argument("--limit", type=int, default=0, help="N pictures spread over the split (0: all)")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")  # raised by timm's imports
    torch.set_grad_enabled(False)
    from icmcodec import pipeline, zoo
    from icmcodec.bench.ra import spread
    from icmcodec.tasks.registry import task as task_spec

    names = dict(m.split("=", 1) for m in a.model)
    rows = []
    for pair in a.pairs:
        name, data = pair.split("=", 1)
        spec = task_spec(name)
        net = pipeline.load_tasknet(name, names.get(name), device="cpu")
        entry = zoo.find(names.get(name), task=name, kind="tasknet")
        kw = {"thresholds": a.thresholds, "matching": a.matching} if name == "boundary" else {}
        metric = spec.metric(net.labels, **kw)
        samples = spread(spec.dataset(data, a.split), a.limit)
        t_net, t0 = 0.0, time.time()
        for s in samples:
            rgb = s.image()
            t1 = time.perf_counter()
            out = net.predict([rgb])[0]
            t_net += time.perf_counter() - t1
            metric.update(out, s.target())
        params = sum(v.numel() for k, v in net.net.state_dict().items()
                     if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
        hw = REFERENCE_INPUT.get(name, (256, 256))
        row = {"task": name, "model": net.config.get("name"), "metric": spec.metric.name, "value": metric.value(),
               "split": a.split, "samples": len(samples), "params": params, "bytes": entry.bytes,
               "reference_input": list(hw), "gflops": flops(net, hw) / 1e9,
               "cpu_s_per_picture": t_net / len(samples), "wall_s": time.time() - t0, **kw}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    doc = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "rows": rows}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(doc, indent=1))
    print("| task | network | val metric | params | size | GFLOPs (input) | CPU s / picture |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['model']} | {r['metric']} {r['value']:.3f} | {r['params'] / 1e6:.2f} M | "
              f"{r['bytes'] / 2**20:.1f} MiB | {r['gflops']:.2f} ({r['reference_input'][1]}x{r['reference_input'][0]}) | "
              f"{r['cpu_s_per_picture']:.3f} |")


if __name__ == "__main__":
    main()
