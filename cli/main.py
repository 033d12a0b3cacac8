"""The ``icm`` command line (click). Torch is imported inside commands only, so
``icm --help`` and ``icm info`` start instantly.

Exit status: 0 everything succeeded; 1 some inputs of a batch failed (the others were
written); 2 a usage error, or the one input given is damaged or unreadable. Every error
is one line on stderr (click's usage errors too: :mod:`cli.errors`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

import bitstream
from icmcodec.registry import TASK_NAMES

from cli.claims import Claims
from cli.errors import IcmGroup
from cli.jobs import (
    Chunked, InputError, Job, Manifest, Outputs, check_out, claim_or_skip, collect, fail as _fail, image_jobs,
    output_files, output_path, quiet_torch_warnings, run_batch, select_shard,
)


@click.group(cls=IcmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="icm", prog_name="icm")
def main() -> None:
    """icm: an image codec for machines.

    \b
    icm encode street.png --task recon -o street.icm
    icm decode street.icm                  # -> street.png
    icm info street.icm                    # header, instantly
    icm models                             # what is installed

    Models ship inside the package; ICM_MODEL_PATH adds folders of your own.
    Exit status: 0 ok, 1 some inputs of a batch failed, 2 usage error or a
    damaged single input.
    """
    from icmcodec.memory import release_freed_memory

    release_freed_memory()  # big pictures run in tiles: give each tile's memory back


def batch_options(f):
    """--shard, --skip-existing and --manifest: the same on every command that writes."""
    f = click.option("--manifest", metavar="FILE.jsonl",
                     help="append one JSON line per output written (input, outputs, bytes, bpp, quality, method, "
                          "task, hashes, seconds); one manifest per process")(f)
    f = click.option("--skip-existing", is_flag=True,
                     help="leave inputs whose outputs are all there alone (outputs appear only when complete, so "
                          "a killed or repeated job resumes where it stopped); concurrent workers on the same "
                          "outputs split the inputs through OUTPUT.claim files and skip each other's")(f)
    f = click.option("--shard", metavar="K/N",
                     help="code only the K-th of N disjoint parts of the inputs, chosen by a stable hash of each "
                          "input's relative path (the same on every machine, in any order)")(f)
    return f


DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                      help="where the networks run; the bytes decode the same on either")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", metavar="OUT", help="output file for a single input; '-' for stdout")
@click.option("--out-dir", type=click.Path(file_okay=False), help="write outputs here, keeping relative paths")
@click.option("--task", default="recon", show_default=True, help="what the decoder will produce (see 'icm models')")
@click.option("--quality", type=float, default=None,
              help="rate/quality trade-off, a real number in the model's quality range (low = fewest bits); default: the model's own (see 'icm models')")
@click.option("--model", default=None, help="coding model name or folder (default: the installed default)")
@click.option("--method", default=None,
              help="coding method (see 'icm models'); default: the best measured one for the task")
@click.option("--task-model", default=None,
              help="task network name or folder the decoder will run (machine tasks; default: the task's own)")
@click.option("--bpp", type=float, default=None,
              help="rate control: the highest quality whose whole file is at most B bits per pixel; a budget "
                   "below the smallest file (92 bytes) is refused before any coding, one at or above the "
                   "largest the format allows (2^31 bytes) means no limit: the top quality")
@click.option("--max-bytes", type=int, default=None,
              help="rate control: the highest quality whose whole file fits in N bytes (an integer, at least "
                   "92; 2^31 or more means no limit: the top quality)")
@click.option("--batch", type=click.IntRange(1, 256), default=None,
              help="pictures analysed per network call, same-size ones together (default: 8 on a GPU, 1 on "
                   "the CPU, where batching gains nothing and would tie a file's bytes to its batch)")
@batch_options
@DEVICE
def encode(inputs, out, out_dir, task, quality, model, method, task_model, bpp, max_bytes, batch, shard,
           skip_existing, manifest, device):
    """Encode pictures into .icm files.

    INPUTS are image files, folders (searched recursively) or '-' for a list of
    paths on stdin, one per line. Without -o/--out-dir, x.png becomes x.icm beside it.
    Alpha is composited over white; 16-bit and grayscale inputs become 8-bit RGB;
    EXIF rotation is applied.

    \b
    Tasks: recon (a picture), semseg, boundary, cls, depth, normal, saliency.
    A machine-task file names the task network its decoder runs (see 'icm models').
    """
    if out and out_dir:
        _fail("give -o or --out-dir, not both")
    if quality is not None and (bpp is not None or max_bytes is not None):
        _fail("give --quality or a rate (--bpp, --max-bytes), not both")
    from icmcodec import pipeline

    from icmcodec.registry import METHODS

    if task not in TASK_NAMES:  # the cheap checks before any input is read or model loaded
        _fail(f"unknown task {task!r} (one of: {', '.join(TASK_NAMES)})")
    if method is not None and method not in METHODS:
        _fail(f"unknown method {method!r} (available: {', '.join(METHODS)})")
    try:
        pipeline.check_rate(bpp, max_bytes)
    except pipeline.UsageError as e:
        _fail(str(e))
    jobs = select_shard(image_jobs(inputs, out, out_dir), shard)
    outputs = Outputs(jobs)
    log = Manifest(manifest)
    try:
        # the codec (bound to the task's adapter, for an adapter method) and the task
        # network the files will name: the pipeline's one way of choosing them
        codec, tasknet = pipeline.encoder_for(task, model=model, method=method, task_model=task_model, device=device)
        if bpp is None and max_bytes is None:
            pipeline.check_quality(codec, quality)
    except (pipeline.UsageError, LookupError) as e:
        _fail(str(e))

    if batch is None:
        batch = 8 if str(codec.device).startswith("cuda") else 1
    claims = Claims(skip_existing)  # cooperating workers: see cli/claims.py

    def skip(job: Job) -> Path | None:
        dst = output_path(job, out, out_dir, ".icm")
        return dst if skip_existing and dst is not None and dst.is_file() else None

    def wanted(i: int) -> bool:  # claimed before its picture is read (and re-checked once claimed)
        return not skip(jobs[i]) and claims.take(output_path(jobs[i], out, out_dir, ".icm")) and not skip(jobs[i])

    chunks = Chunked(jobs, lambda rgbs: pipeline.analyse_batch(codec, rgbs), batch, wanted)

    def work(job: Job) -> str:
        t0 = time.time()
        dst = output_path(job, out, out_dir, ".icm")
        try:
            if (note := claim_or_skip(claims, dst, lambda: skip(job), f"{job.src} -> {dst}")) is not None:
                return note
            try:
                rgb, an = chunks.get(job)
                data = pipeline.encode_image(rgb, task=task, quality=quality, codec=codec, tasknet=tasknet, bpp=bpp,
                                             max_bytes=max_bytes, analysis=an)
            except pipeline.UsageError as e:
                raise InputError(str(e)) from None
            outputs.write(job, [(dst, data)])
        finally:
            claims.release(dst)  # done, failed or skipped: the claim goes
        hd = bitstream.unpack(data).header
        h, w = rgb.shape[:2]
        log.add({"input": job.src, "output": str(dst) if dst else "-", "bytes": len(data),
                 "bpp": 8 * len(data) / (h * w), "quality": hd.quality, "method": codec.method,
                 "task": task, "model_hash": hd.model_hash.hex(), "adapter_hash": hd.adapter_hash.hex(),
                 "seconds": round(time.time() - t0, 3)})
        return (f"{job.src} -> {dst or 'stdout'}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, "
                f"q {hd.quality:g}, {w}x{h}, {time.time() - t0:.2f} s")

    try:
        sys.exit(run_batch(jobs, "encode", work))
    except pipeline.UsageError as e:
        _fail(str(e))
    finally:
        claims.release_all()


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", metavar="OUT", help="output file for a single input; '-' for stdout")
@click.option("--out-dir", type=click.Path(file_okay=False), help="write outputs here, keeping relative paths")
@click.option("--task", default=None,
              help="what to produce: the file's own task (the default), recon where the file's method codes a "
                   "picture, or, for a recon file of such a method, any machine task (its network runs on the "
                   "decoded picture)")
@click.option("--task-model", default=None,
              help="task network name or folder for a recon file decoded to a machine task (default: the "
                   "task's own); a file that names its network must be decoded with that one")
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=None,
              help="for methods whose decoder has a task strength (mpa): the fraction rho of tokens that take the "
                   "task's paths, from 0 (the base's picture, exactly) to 1 (default: the path set's own)")
@batch_options
@DEVICE
def decode(inputs, out, out_dir, task, task_model, strength, shard, skip_existing, manifest, device):
    """Decode .icm files into the task's output.

    INPUTS are .icm files, folders (searched recursively for *.icm) or '-' for one
    bitstream on stdin. Outputs, beside the input or under --out-dir:

    \b
    recon     x.png            8-bit RGB
    semseg    x.semseg.png     palette PNG of class ids + x.semseg.json legend
    boundary  x.boundary.png   8-bit edge probability
    cls       x.cls.json       label, score, top-5
    depth     x.depth.png      16-bit, millimetres (+ x.depth.preview.png)
    normal    x.normal.png     RGB = (n + 1) / 2 * 255
    saliency  x.saliency.png   8-bit saliency

    -o names the main output exactly; side files take its name with their ending.
    """
    if out and out_dir:
        _fail("give -o or --out-dir, not both")
    if task is not None and task not in TASK_NAMES:
        _fail(f"unknown task {task!r} (one of: {', '.join(TASK_NAMES)})")
    if task_model and task in (None, "recon"):
        _fail("--task-model goes with --task T, a machine task")
    jobs = select_shard(collect(inputs, (".icm",), stdin_is_list=False), shard)
    if out and len(jobs) != 1:
        _fail(f"-o names one output but there are {len(jobs)} inputs; use --out-dir")
    check_out(out, out_dir)
    outputs = Outputs(jobs)
    log = Manifest(manifest)
    quiet_torch_warnings()
    from icmcodec import pipeline
    from icmcodec.entropy import CorruptStreamError

    claims = Claims(skip_existing)  # cooperating workers: see cli/claims.py
    try:
        tasknet = pipeline.load_tasknet(task, task_model, device=device) if task_model else None
    except pipeline.UsageError as e:
        _fail(str(e))

    def work(job: Job) -> str:
        try:
            data = sys.stdin.buffer.read() if job.src == "-" else Path(job.src).read_bytes()
        except OSError as e:
            raise InputError(f"cannot read ({e.strerror})") from None
        claimed = None  # the main output this process claimed (--skip-existing)
        try:
            t_load = time.time()
            hd = bitstream.unpack(data).header
            if skip_existing:
                want = pipeline.output_suffixes(task or hd.task.name.lower())
                planned = output_files(job, out, out_dir, dict.fromkeys(want, b""), task or hd.task.name.lower())

                def there() -> bool:
                    return all(p is not None and p.is_file() for p, _ in planned)

                claimed = planned[0][0]
                if (note := claim_or_skip(claims, claimed, there, f"{job.src} -> {claimed}")) is not None:
                    return note
            codec = pipeline.codec_for(hd, device)  # cached after the first
            t0 = time.time()
            res = pipeline.decode_bytes(data, task=task, codec=codec, tasknet=tasknet, strength=strength)
            placed = output_files(job, out, out_dir, res.files(), res.task)
            outputs.write(job, placed)
        except (bitstream.BitstreamError, CorruptStreamError, pipeline.UsageError) as e:
            raise InputError(str(e)) from None
        finally:
            claims.release(claimed)  # done, failed or skipped: the claim goes
        net = getattr(res.tasknet, "tasknet", res.tasknet)  # an adapter's own network, or the one that ran
        if net is not None and not hasattr(net, "name"):
            net = None  # a method whose decoder gives the task itself ran no task network
        log.add({"input": job.src, "outputs": [str(p) if p else "-" for p, _ in placed], "task": res.task,
                 "bpp": res.bpp, "quality": hd.quality, "method": codec.method,
                 "model_hash": hd.model_hash.hex(), "adapter_hash": hd.adapter_hash.hex(),
                 "task_network": None if net is None else {"name": net.name, "hash": net.hash.hex()},
                 "seconds": round(time.time() - t_load, 3)})
        return (f"{job.src} -> {placed[0][0] or 'stdout'}: {res.task}, {res.bpp:.4f} bpp, {time.time() - t0:.2f} s "
                f"(model load {t0 - t_load:.2f} s)")

    try:
        sys.exit(run_batch(jobs, "decode", work))
    finally:
        claims.release_all()


# from the bitstream's task tags (torch-free, so `icm --help` stays instant)
MACHINE_TASKS = tuple(name for name, tag in TASK_NAMES.items() if tag != bitstream.TaskTag.RECON)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--task", required=True, type=click.Choice(MACHINE_TASKS), help="the machine task")
@click.option("-o", "--output", "out", metavar="OUT", help="output file for a single input; '-' for stdout")
@click.option("--out-dir", type=click.Path(file_okay=False), help="write outputs here, keeping relative paths")
@click.option("--task-model", "task_model", default=None,
              help="task network name or folder (default: the task's own)")
@click.option("--model", "task_model", default=None, hidden=True)  # before 0.3: the same as --task-model
@click.option("--batch", type=click.IntRange(1, 256), default=8, show_default=True,
              help="pictures per network call (same-size pictures are batched)")
@DEVICE
def analyze(inputs, task, out, out_dir, task_model, batch, device):
    """Run a task's clean network on ordinary pictures (no coding).

    INPUTS are image files, folders (searched recursively) or '-' for a list of
    paths on stdin. Writes exactly what 'icm decode' writes for the task
    (street.jpg -> street.semseg.png + street.semseg.json, street.cls.json, ...),
    so coded and uncoded results compare file for file.
    """
    if out and out_dir:
        _fail("give -o or --out-dir, not both")
    jobs = image_jobs(inputs, out, out_dir)
    outputs = Outputs(jobs)
    from icmcodec import pipeline

    try:
        net = pipeline.load_tasknet(task, task_model, device=device)
    except pipeline.UsageError as e:
        _fail(str(e))
    chunks = Chunked(jobs, lambda pics: net.predict(pics, batch=batch), batch)

    def work(job: Job) -> str:
        _, res = chunks.get(job)
        placed = output_files(job, out, out_dir, net.write(res), task)
        outputs.write(job, placed)
        return f"{job.src} -> {placed[0][0] or 'stdout'}: {task}"

    sys.exit(run_batch(jobs, "analyze", work))


@main.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def info(path, as_json):
    """Print the header of an .icm file (no model is loaded)."""
    from icmcodec.imageio import not_regular

    if path != "-" and (why := not_regular(path)) is not None:
        _fail(f"{path}: {why}")  # never opened: a pipe or a device could block forever
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        _fail(f"{path}: cannot read ({e.strerror})")
    try:
        c = bitstream.unpack(data)
    except bitstream.BitstreamError as e:
        _fail(f"{path}: {e}")
    d = c.header.as_dict()
    d["file_bytes"] = c.total_size
    d["bpp"] = round(bitstream.bits_per_pixel(c), 6)
    d["chunks"] = [{"type": bitstream.ChunkType(ch.type).name.lower(), "bytes": len(ch.data)} for ch in c.chunks]
    from icmcodec.registry import method_by_id

    try:  # what this installation can decode the file to (its adapters, not their weights)
        d["tasks"] = list(method_by_id(c.header.method).serves(c.header))
    except LookupError:
        d["tasks"] = []
    if as_json:
        click.echo(json.dumps(d))
        return
    for k, v in d.items():
        if k == "chunks":
            v = ", ".join(f"{x['type']} {x['bytes']} B" for x in v)
        elif k == "tasks":
            v = ", ".join(v) or "(its method is not installed)"
        click.echo(f"{k:13s} {v}")


def _param_count(weights: Path, counts) -> int:
    """Learned parameters (``counts(key)``: not tables, not statistics) from the
    safetensors header, without torch."""
    with open(weights, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))
    total = 0
    for k, v in meta.items():
        if k != "__metadata__" and counts(k):
            size = 1
            for s in v["shape"]:
                size *= s
            total += size
    return total


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def models(as_json):
    """List installed models: coding models, task networks (with their clean metric) and
    adapters (with the model they were made for), then each task's default method."""
    from icmcodec import zoo
    from icmcodec.methods.spec import counts_as_parameter
    from icmcodec.registry import METHODS, default_method

    defaults = {t: default_method(t).name for t in TASK_NAMES}

    def counts(m):  # a coding model's method says which tensors are parameters
        spec = METHODS.get(m.config.get("method")) if m.kind == "codec" else None
        return spec.counts_as_parameter if spec else counts_as_parameter

    rows = []
    for m in zoo.available():
        clean = m.config.get("clean_metric") or {}
        rows.append({
            "name": m.name, "kind": m.kind, "task": m.config.get("task"),
            "method": m.config.get("method", m.kind), "quality_range": m.config.get("quality_range"),
            "params": _param_count(m.weights, counts(m)), "bytes": m.bytes, "path": str(m.path),
            "clean_metric": clean or None,
            **({"base_hash": m.config.get("base_hash"), "tasknet_hash": m.config.get("tasknet_hash")}
               if m.kind == "adapter" else {}),
            **({"default_method_for": [t for t, d in defaults.items() if d == m.config.get("method")]}
               if m.kind == "codec" else {}),
        })
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no models installed", err=True)
    else:
        nw = max(16, *(len(r["name"]) for r in rows))  # columns stay aligned with long names
        click.echo(f"{'name':{nw}s} {'task':8s} {'method':12s} {'quality':10s} {'params':>9s} {'bytes':>9s}  clean val")
        for r in rows:
            q = "{:g}..{:g}".format(*r["quality_range"]) if r["quality_range"] else "-"
            c = r["clean_metric"]
            cv = f"  {c['metric']} {c['value']:.3f}" if c else ""
            if r["kind"] == "adapter":
                cv = f"  adapter on model {r['base_hash'][:12]}"
            click.echo(f"{r['name']:{nw}s} {r['task']:8s} {r['method']:12s} {q:10s} {r['params']:9d} "
                       f"{r['bytes']:9d}{cv}")
    click.echo("\ndefault method per task (icm encode --task T; the measured best, icmcodec/default_methods.json):")
    click.echo("  " + ", ".join(f"{t} {m}" for t, m in defaults.items()))
    have = {r["task"] for r in rows if r["kind"] == "tasknet"}
    missing = [t for t in TASK_NAMES if t != "recon" and t not in have]
    if missing:
        click.echo(f"\nno task network is installed for {', '.join(missing)}: a network trained elsewhere "
                   "installs as a model folder on ICM_MODEL_PATH (config.json naming the task, a timm backbone "
                   "and a head, plus model.safetensors; README, 'Bring your own task network')")


if __name__ == "__main__":
    main()
