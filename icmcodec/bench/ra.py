"""Rate-accuracy benchmark: what a task's accuracy costs in bits, for every codec.

    python benchmarks/ra.py --task semseg ../shared/data/camvid --out benchmarks/results/ra-semseg

For every labelled picture of a split: each anchor codec (:mod:`icmcodec.bench.anchors`)
at 8 qualities -> decoded picture -> the task's clean-trained network -> task metric
against the ground truth; and every icm method through its real coded path
(``pipeline.encode_image(task=T)`` -> ``.icm`` bytes -> ``pipeline.decode_bytes``,
which runs the network the header names). Rate is the mean over pictures of
``8 * bytes / pixels``; the metric is the dataset-level one (mIoU from one confusion
matrix, ODS over all pictures, top-1) at each quality setting. The clean (uncoded)
metric is the ceiling. BD-rate and BD-metric of each icm method against each anchor
use the ``bjontegaard`` package (pchip) on the overlapping range only; for metrics
where lower is better (depth RMSE, angular error) the metric is negated first.
Writes ``ra.json``, ``ra.csv`` and ``ra.png`` to ``--out``.

A full split takes hours on a small CPU, so every finished picture is appended to
``--out/pictures.jsonl`` (its rate and its metric totals for every curve, one line,
flushed) and ``--resume`` continues a run from there: the pictures already in it are
added back, not recomputed. The file's first line records the run's settings (task,
network and model hashes, qualities, anchors, metric options); a run with other
settings refuses to resume from it.

``--shard K/N`` computes only every N-th picture (from the K-th) into
``pictures-K-of-N.jsonl``, so N processes share a machine's cores or N machines share
a split; whichever finds every picture of the split in the folder's logs when it ends
writes the results (a later ``--resume`` without ``--shard`` does too).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from icmcodec.bench.anchors import icm_qualities, pick_anchors
from icmcodec.bench.measure import bd_metric, bd_rate
from icmcodec.tasks.metrics import add_totals, totals


def spread(samples: list, limit: int) -> list:
    """``limit`` samples evenly spread over the list (covers every class of a sorted ImageFolder)."""
    if not limit or limit >= len(samples):
        return samples
    idx = np.linspace(0, len(samples) - 1, limit).round().astype(int)
    return [samples[i] for i in idx]


class Curve:
    """One codec at one quality: summed rate and a dataset-level metric accumulator."""

    def __init__(self, metric):
        self.metric, self.bpp, self.n = metric, 0.0, 0

    def add(self, bpp: float, picture_totals: dict) -> None:
        """One picture: its rate and its metric totals (see :func:`one_picture`)."""
        add_totals(self.metric, picture_totals)
        self.bpp += bpp
        self.n += 1

    def point(self) -> dict:
        return {"bpp": self.bpp / max(1, self.n), "metric": self.metric.value()}


def one_picture(new_metric, output, label) -> dict:
    """The metric totals of one picture's output (added to a curve, stored for resuming)."""
    m = new_metric()
    m.update(output, label)
    return totals(m)


class PictureLog:
    """``pictures.jsonl`` (or ``pictures-K-of-N.jsonl`` for a shard): the run's settings,
    then one line per finished picture."""

    def __init__(self, folder: Path, settings: dict, resume: bool, shard: tuple[int, int] | None):
        # a snapshot as the file stores it: the objects it came from may change during the
        # run (pillow-heif adds its defaults to the enc_params dict it is given)
        self.folder, self.settings = folder, json.loads(json.dumps(settings))
        self.path = folder / ("pictures.jsonl" if shard is None else f"pictures-{shard[0]}-of-{shard[1]}.jsonl")
        folder.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh run: no picture of an earlier one counts
            for f in folder.glob("pictures*.jsonl"):
                f.unlink()
        if not self.path.exists():
            self.path.write_text(json.dumps({"settings": self.settings}) + "\n")
        else:  # drop a last line cut off by a killed run, so that new lines start whole
            text = self.path.read_text()
            if not text.endswith("\n"):
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(text[:text.rfind("\n") + 1])
                tmp.replace(self.path)

    def records(self) -> dict[str, dict]:
        """Every finished picture in the folder's logs (all shards), by name."""
        done = {}
        for f in sorted(self.folder.glob("pictures*.jsonl")):
            text = f.read_text()
            raw = [x for x in text.splitlines() if x.strip()]
            if raw and not text.endswith("\n"):
                raw = raw[:-1]  # a run killed while writing its last picture: that picture is redone
            lines = [json.loads(x) for x in raw]
            if not lines or lines[0].get("settings") != self.settings:
                raise SystemExit(f"error: {f} was made with other settings; remove it or drop --resume")
            done.update((rec["name"], rec) for rec in lines[1:])
        return done

    def append(self, rec: dict) -> None:
        with open(self.path, "a") as fh:  # one line per picture: a killed run leaves whole lines
            fh.write(json.dumps(rec) + "\n")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise SystemExit(f"error: --shard {text}: expected K/N with 1 <= K <= N")
    return int(k), int(n)


def bd_pair(anchor_pts: list[dict], test_pts: list[dict], sign: float) -> dict:
    a = ([p["bpp"] for p in anchor_pts], [sign * p["metric"] for p in anchor_pts])
    t = ([p["bpp"] for p in test_pts], [sign * p["metric"] for p in test_pts])
    m = bd_metric(a, t)
    return {"bd_rate": bd_rate(a, t), "bd_metric": None if m is None else sign * m}


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for name, pts in doc["curves"].items():
        mine = name.startswith("icm")
        ax.plot([p["bpp"] for p in pts], [p["metric"] for p in pts], "o-" if mine else ".--", label=name,
                linewidth=2.2 if mine else 1.2)
    ax.axhline(doc["clean"], color="k", linewidth=1, linestyle=":", label="clean (uncoded)")
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (whole file, log scale)")
    ax.set_ylabel(f"{doc['meta']['metric']} ({doc['meta']['task']})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{doc['meta']['task']}: {doc['meta']['samples']} {doc['meta']['split']} pictures, "
                 f"network {doc['meta']['tasknet']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(doc: dict) -> str:
    m = doc["meta"]["metric"]
    lines = [f"| codec | lowest bpp | {m} there | highest bpp | {m} there |", "|---|---|---|---|---|"]
    for name, pts in doc["curves"].items():
        lo, hi = min(pts, key=lambda p: p["bpp"]), max(pts, key=lambda p: p["bpp"])
        lines.append(f"| {name} | {lo['bpp']:.3f} | {lo['metric']:.3f} | {hi['bpp']:.3f} | {hi['metric']:.3f} |")
    lines += ["", f"clean (uncoded): {m} {doc['clean']:.3f}", ""]
    # the coded path against its own ceiling, per icm method
    for meth, pts in doc["curves"].items():
        if meth.startswith("icm") and doc["clean"]:
            lo, hi = min(pts, key=lambda p: p["bpp"]), max(pts, key=lambda p: p["bpp"])
            lines.append(f"{meth}: the highest quality keeps {100 * hi['metric'] / doc['clean']:.1f} % of the "
                         f"clean {m} ({hi['bpp']:.3f} bpp); the lowest quality codes at {lo['bpp']:.3f} bpp")
    lines += ["", f"| icm method vs anchor | BD-rate | BD-{m} |", "|---|---|---|"]
    for meth, per in doc["bd"].items():
        for anchor, v in per.items():
            br = "n/a (no overlap)" if v["bd_rate"] is None else f"{v['bd_rate']:+.1f} %"
            bm = "n/a (no overlap)" if v["bd_metric"] is None else f"{v['bd_metric']:+.4f}"
            lines.append(f"| {meth} vs {anchor} | {br} | {bm} |")
    return "\n".join(lines)


def stored_curves(path: Path | None, task: str, split: str, tasknet_hash: str, names: list[str],
                  skip: set[str], new_metric) -> dict[str, list[dict]]:
    """The curves of an earlier run's ``ra.json``, checked to be comparable: the same task,
    split and task network, and the same pictures. A run over fewer pictures
    (``--limit``) gets the earlier run's curves recomputed over exactly its own pictures
    from the per-picture logs beside that ``ra.json`` (every picture must be in them).
    Curves this run computes itself are not taken."""
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
        meta = doc["meta"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"error: --curves-from {path}: not a rate-accuracy result ({e})") from None
    want = {"task": task, "split": split, "tasknet_hash": tasknet_hash}
    got = {k: meta.get(k) for k in want}
    if got != want:
        bad = ", ".join(f"{k} {got[k]!r} (this run: {want[k]!r})" for k in want if got[k] != want[k])
        raise SystemExit(f"error: --curves-from {path} is not comparable: {bad}")
    if meta.get("samples") == len(names):
        return {n: pts for n, pts in doc["curves"].items() if n not in skip}
    records = {}
    for f in sorted(Path(path).parent.glob("pictures*.jsonl")):
        for line in f.read_text().splitlines()[1:]:
            if line.strip():
                rec = json.loads(line)
                records[rec["name"]] = rec
    absent = [n for n in names if n not in records]
    if absent:
        raise SystemExit(f"error: --curves-from {path}: {len(absent)} of this run's {len(names)} pictures "
                         f"(first: {absent[0]}) are not in its per-picture logs")
    curves: dict[tuple[str, float | int], Curve] = {}
    for name in names:
        for key, c in records[name]["curves"].items():
            n, _, q = key.rpartition("@")
            if n not in skip:
                k = (n, float(q) if n.startswith("icm") else int(q))
                curves.setdefault(k, Curve(new_metric())).add(c["bpp"], c["totals"])
    out: dict[str, list[dict]] = {}
    for (n, q), c in curves.items():
        out.setdefault(n, []).append({"quality": q, **c.point()})
    return {n: sorted(pts, key=lambda p: p["quality"]) for n, pts in out.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks/ra.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="dataset root in the task's folder layout")
    p.add_argument("--task", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=0, help="use N pictures spread over the split (0: all)")
    p.add_argument("--task-model", default=None, help="task network (default: the task's own)")
    p.add_argument("--model", action="append", default=None,
                   help="icm coding model, repeatable: each gives a curve icm-<name> (default: the recon default)")
    p.add_argument("--adapter", default=None,
                   help="the prompt set the --model codecs code with (default: the task's default set); "
                        "its curve is icm-<model>+<set>; 'none': a picture codec's base without any set, "
                        "the task network on its reconstruction (TransTIC's 'TIC without prompts'), "
                        "curve icm-<model>+none")
    p.add_argument("--qualities", default=None, help="comma-separated icm qualities (default: 9 over the range)")
    p.add_argument("--strength", default=None,
                   help="comma-separated decode-time strengths for methods that have one (MPA's rho): every file "
                        "is decoded at each, one curve per strength, icm-<model>~rho<S> (0: the base's picture)")
    p.add_argument("--anchors", default="jpeg,webp,avif,heic,jxl", help="comma-separated anchors, or 'none'")
    p.add_argument("--curves-from", type=Path, metavar="RA_JSON",
                   help="add the curves of an earlier run's ra.json (same task, split and network) instead of "
                        "recomputing them: a new method against stored anchors; with --limit, recomputed over "
                        "this run's pictures from the per-picture logs beside it")
    p.add_argument("--thresholds", type=int, default=25, help="boundary only: ODS thresholds (the BSDS code uses 99)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true", help="continue from the logs in --out (same settings)")
    p.add_argument("--shard", metavar="K/N", help="compute only every N-th picture, from the K-th (see above)")
    a = p.parse_args(argv)
    import torch

    with torch.no_grad():  # restores the caller's grad mode (tests call main in-process)
        _run(a)


def _run(a) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")  # raised by timm's imports

    import torch

    from icmcodec import pipeline
    from icmcodec.tasks.registry import task as task_spec

    spec = task_spec(a.task)
    net = pipeline.load_tasknet(a.task, a.task_model, device="cpu")
    codecs = {}
    for name in a.model or [None]:
        c = pipeline.load_codec(name, device="cpu")
        label = f"icm-{c.config.get('name')}"
        if a.adapter == "none":
            if c.produces != "picture":
                raise SystemExit(f"error: --adapter none: {c.config.get('name')} does not code a picture")
            label += "+none"
        elif a.adapter:  # an ablation's set, say, instead of the task's default one
            c = c.bound(pipeline.load_adapter(c, spec.name, name=a.adapter))
            label += f"+{a.adapter}"
        codecs[label] = (c, icm_qualities(c, a.qualities))
    strengths = [None] if a.strength is None else [float(v) for v in a.strength.split(",")]
    # one curve per (codec, strength): the file is encoded once, decoded at each strength
    decodes = {(m if s is None else f"{m}~rho{s:g}"): (m, s) for m in codecs for s in strengths}
    # with no adapter, a file is the base's picture ("recon": the header's task and
    # adapter fields have the same size, so the rate is the same) and the network runs
    # on the decoded picture (a recon file decoded to the task: the network given runs)
    coded_task = "recon" if a.adapter == "none" else spec.name
    anchors = pick_anchors(a.anchors)
    samples = spread(spec.dataset(a.data, a.split), a.limit)
    if not samples:
        raise SystemExit(f"no labelled pictures in {a.data} ({a.split})")
    kw = {"thresholds": a.thresholds} if spec.name == "boundary" else {}
    new_metric = lambda: spec.metric(net.labels, **kw)  # noqa: E731
    clean = new_metric()
    curves = {(d, q): Curve(new_metric()) for d, (m, _) in decodes.items() for q in codecs[m][1]}
    curves.update({(n, q): Curve(new_metric()) for n, x in anchors.items() for q in x.qualities})
    settings = {"task": spec.name, "split": a.split, "samples": [s.name for s in samples],
                "tasknet_hash": net.hash.hex(), "model_hashes": {m: c.model_hash.hex() for m, (c, _) in codecs.items()}, "curves": [f"{n}@{q}" for n, q in curves],
                "anchors": {n: x.settings for n, x in anchors.items()}, "metric_options": kw}
    shard = parse_shard(a.shard)
    log = PictureLog(a.out, settings, a.resume or shard is not None, shard)

    def account(rec: dict) -> None:
        add_totals(clean, rec["clean"])
        for key, c in rec["curves"].items():
            n, _, q = key.rpartition("@")
            curves[(n, float(q) if n.startswith("icm") else int(q))].add(c["bpp"], c["totals"])

    earlier = log.records() if a.resume or shard else {}
    if earlier:
        print(f"resuming: {len(earlier)} of {len(samples)} pictures already in {a.out}", file=sys.stderr)
    t0 = time.time()
    for i, s in enumerate(samples):
        if s.name in earlier or (shard and i % shard[1] != shard[0] - 1):
            continue
        rgb = s.image()
        label = s.target()
        px = rgb.shape[0] * rgb.shape[1]
        rec = {"name": s.name, "clean": one_picture(new_metric, net.predict([rgb])[0], label), "curves": {}}
        for m, (codec, qualities) in codecs.items():
            for q in qualities:
                data = pipeline.encode_image(rgb, task=coded_task, quality=q, codec=codec, tasknet=net)
                for d, (_, strength) in ((d, v) for d, v in decodes.items() if v[0] == m):
                    res = pipeline.decode_bytes(data, task=spec.name, codec=codec, tasknet=net, strength=strength)
                    rec["curves"][f"{d}@{q}"] = {"bpp": 8 * len(data) / px,
                                                 "totals": one_picture(new_metric, res.output, label)}
        for n, anchor in anchors.items():
            for q in anchor.qualities:
                data = anchor.encode(rgb, q)
                out = net.predict([anchor.decode(data)])[0]
                rec["curves"][f"{n}@{q}"] = {"bpp": 8 * len(data) / px, "totals": one_picture(new_metric, out, label)}
        log.append(rec)
        print(f"[{i + 1}/{len(samples)}] {s.name} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    done = log.records()
    missing = [s.name for s in samples if s.name not in done]
    if missing:
        print(f"{len(done)} of {len(samples)} pictures done in {a.out}; the results are written once every "
              f"shard has finished (rerun with --resume to finish)", file=sys.stderr)
        return
    for s in samples:  # in split order, whichever process computed each picture
        account(done[s.name])
    finished = set(earlier)
    by_codec: dict[str, list[dict]] = {}
    for (n, q), c in curves.items():
        by_codec.setdefault(n, []).append({"quality": q, **c.point()})
    stored = stored_curves(a.curves_from, spec.name, a.split, net.hash.hex(), [s.name for s in samples],
                           set(by_codec), new_metric)
    sign = 1.0 if spec.higher_is_better else -1.0
    mine = [m for m in by_codec if m.startswith("icm")]
    by_codec.update(stored)
    refs = list(anchors) + list(stored)
    bd = {m: {n: bd_pair(by_codec[n], by_codec[m], sign) for n in refs if n != m} for m in mine}
    doc = {
        "meta": {"task": spec.name, "metric": spec.metric.name, "data": str(a.data), "split": a.split,
                 "samples": len(samples), "tasknet": net.config.get("name"), "tasknet_hash": net.hash.hex(),
                 "models": {m: c.config.get("name") for m, (c, _) in codecs.items()},
                 "icm_qualities": {m: qs for m, (_, qs) in codecs.items()},
                 "anchors": {n: {"settings": x.settings, "qualities": x.qualities} for n, x in anchors.items()},
                 "metric_options": kw, "higher_is_better": spec.higher_is_better,
                 "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                 "wall_s": time.time() - t0, "pictures_from_earlier_runs": len(finished),
                 "curves_from": {"file": str(a.curves_from), "curves": sorted(stored)} if stored else None},
        "clean": clean.value(), "curves": by_codec, "bd": bd,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ra.json").write_text(json.dumps(doc, indent=1))
    with open(a.out / "ra.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["codec", "quality", "bpp", spec.metric.name])
        w.writerow(["clean", "", "", doc["clean"]])
        for n, pts in by_codec.items():
            for pt in pts:
                w.writerow([n, pt["quality"], pt["bpp"], pt["metric"]])
    plot(doc, a.out / "ra.png")
    print(format_table(doc), file=sys.stderr)
    print(f"wrote {a.out}/ra.json, ra.csv, ra.png ({doc['meta']['wall_s']:.0f} s)", file=sys.stderr)
