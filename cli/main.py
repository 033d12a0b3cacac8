"""The ``icm`` command line (click). Torch is imported inside commands only, so
``icm --help`` and ``icm info`` start instantly.

Exit status: 0 everything succeeded; 1 some inputs of a batch failed (the others were
written); 2 a usage error, or the one input given is damaged or unreadable.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

import bitstream
from icmcodec.registry import TASK_NAMES

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class InputError(Exception):
    """A bad input: reported in one line; exit 2 if it was the only input."""


@dataclass
class Job:
    src: str  # path, or "-" for stdin bytes
    rel: Path  # relative output stem (for --out-dir)
    error: str | None = None  # found broken while listing: fails with this message


def _fail(msg: str) -> None:
    click.echo(f"icm: error: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def collect(inputs: tuple[str, ...], suffixes: tuple[str, ...], stdin_is_list: bool) -> list[Job]:
    """Expand files, folders (recursively, keeping relative paths) and '-'.

    A link inside a folder that cannot be followed (a loop, or a target that is gone)
    becomes a job of its own that fails with the reason, so the batch reports it."""
    jobs: list[Job] = []
    for item in inputs:
        if item == "-":
            if stdin_is_list:
                for line in sys.stdin:
                    line = line.rstrip("\r\n")
                    if line:
                        jobs.append(Job(line, Path(Path(line).name)))
            else:
                jobs.append(Job("-", Path("stdin")))
            continue
        p = Path(item)
        if p.is_dir():
            jobs.extend(walk(p, suffixes))
        else:
            jobs.append(Job(item, Path(p.name)))
    return jobs


def walk(root: Path, suffixes: tuple[str, ...]) -> list[Job]:
    """Files under ``root`` with one of ``suffixes``, sorted, following links to folders
    once (a folder reached again through a link is a loop and is reported)."""
    found: list[Job] = []
    seen: set[tuple[int, int]] = set()  # the folders being read, root to here

    def visit(folder: Path, rel: Path) -> None:
        st = folder.stat()
        me = (st.st_dev, st.st_ino)
        if me in seen:  # a link back to a folder we are inside
            found.append(Job(str(folder), rel, "symlink loop: the link leads back to a folder above it"))
            return
        seen.add(me)
        try:
            _visit_entries(folder, rel)
        finally:
            seen.discard(me)

    def _visit_entries(folder: Path, rel: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            found.append(Job(str(folder), rel, f"cannot list the folder ({e.strerror})"))
            return
        for e in entries:
            path, sub = Path(e.path), rel / e.name
            try:
                is_dir, is_file = e.is_dir(), e.is_file()
                if e.is_symlink():
                    os.stat(e.path)  # raises for a loop or a dangling link
            except OSError as err:
                found.append(Job(str(path), sub, f"cannot follow the link ({err.strerror or err})"))
                continue
            if is_dir:
                visit(path, sub)
            elif is_file and path.suffix.lower() in suffixes:
                found.append(Job(str(path), sub))

    visit(root, Path())
    return found


def output_path(job: Job, out: str | None, out_dir: str | None, suffix: str) -> Path | None:
    """Where a job's output goes; None means stdout."""
    if out == "-":
        return None
    if out:
        return Path(out)
    if out_dir:
        return Path(out_dir) / job.rel.with_suffix(suffix)
    if job.src == "-":
        raise InputError("reading from stdin: give -o FILE (or -o - for stdout)")
    return Path(job.src).with_suffix(suffix)


def image_jobs(inputs: tuple[str, ...], out: str | None, out_dir: str | None) -> list[Job]:
    """Picture inputs (files, folders, '-' for a list of paths); -o needs exactly one."""
    from icmcodec.imageio import IMAGE_SUFFIXES

    jobs = collect(inputs, tuple(IMAGE_SUFFIXES), stdin_is_list=True)
    if out and len(jobs) != 1:
        _fail(f"-o names one output but there are {len(jobs)} inputs; use --out-dir")
    check_out(out, out_dir)
    _quiet_torch_warnings()
    return jobs


def check_out(out: str | None, out_dir: str | None) -> None:
    """Usage errors about the output arguments, before any work."""
    if out and out != "-" and Path(out).is_dir():
        _fail(f"-o {out} is a folder; use --out-dir for a folder")
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        _fail(f"--out-dir {out_dir} is a file, not a folder")


def output_files(job: Job, out: str | None, out_dir: str | None, files: dict[str, bytes],
                 task: str) -> list[tuple[Path | None, bytes]]:
    """Where each output file of a job goes. The first file is the main output: named
    ``<stem><suffix>`` (``street.semseg.png``) beside the input or under ``--out-dir``,
    or exactly ``-o``; side files (a legend, a preview) take the main output's name
    with their own ending (``-o x.png`` -> ``x.json``). ``-o -``: the main file only."""
    suffixes = list(files)
    main = output_path(job, out, out_dir, suffixes[0])
    if main is None:
        return [(None, files[suffixes[0]])]
    placed = [(main, files[suffixes[0]])]
    for sfx in suffixes[1:]:
        if out:
            base = main.with_suffix("")
            placed.append((base.with_name(base.name + sfx.removeprefix(f".{task}")), files[sfx]))
        else:
            placed.append((output_path(job, None, out_dir, sfx), files[sfx]))
    return placed


class Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        self.on = total > 1 and sys.stderr.isatty()

    def step(self) -> None:
        self.done += 1
        if self.on:
            n = 30 * self.done // self.total
            sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\n")


def run_batch(jobs: list[Job], label: str, work) -> int:
    """Run ``work(job)`` for each job, keep going past failures, report at the end."""
    if not jobs:
        _fail("no inputs found")
    failed: list[tuple[str, str, bool]] = []
    notes: list[str] = []
    progress = Progress(len(jobs), label)
    t0 = time.time()
    for job in jobs:
        try:
            if job.error:
                raise InputError(job.error)
            notes.append(work(job))
        except InputError as e:
            failed.append((job.src, str(e), True))
        except MemoryError:
            failed.append((job.src, "not enough memory for this picture", True))
        except KeyboardInterrupt:
            progress.close()
            click.echo("icm: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # one line per failure, never a traceback
            failed.append((job.src, f"internal error ({e.__class__.__name__}: {e})", False))
        progress.step()
    progress.close()
    if len(jobs) == 1 and notes:
        click.echo(notes[0], err=True)
    for src, msg, _ in failed:
        click.echo(f"icm: error: {src}: {msg}", err=True)
    if len(jobs) > 1:
        click.echo(f"{label}: {len(jobs) - len(failed)} ok, {len(failed)} failed, {time.time() - t0:.1f} s", err=True)
    if not failed:
        return EXIT_OK
    if len(jobs) == 1 and failed[0][2]:
        return EXIT_USAGE
    return EXIT_PARTIAL


class Outputs:
    """Every output path of a batch, checked before anything of a job is written.

    A job's files are all refused, and none written, if one of them would replace an
    input of the batch, a file this batch already wrote (two inputs mapped to one
    name: ``a.png`` and ``a.jpg``, or ``x/p.png`` and ``y/p.png`` under one
    ``--out-dir``), or a folder; or if two of its own files share a name."""

    def __init__(self, jobs: list[Job]):
        self.inputs = {_key(Path(j.src)): j.src for j in jobs if j.src != "-" and not j.error}
        self.written: dict[str, str] = {}

    def write(self, job: Job, placed: list[tuple[Path | None, bytes]]) -> None:
        keys = []
        for dst, _ in placed:
            if dst is None:
                continue
            k = _key(dst)
            if k in self.inputs:
                raise InputError(f"output {dst} would overwrite the input {self.inputs[k]}")
            if k in self.written:
                raise InputError(f"output {dst} was already written for {self.written[k]} in this batch "
                                 "(two inputs map to one output name)")
            if dst.is_dir():
                raise InputError(f"output {dst} is a folder")
            if k in keys:
                raise InputError(f"two outputs of this input are both named {dst}")
            keys.append(k)
        from icmcodec.imageio import atomic_write

        for dst, blob in placed:
            if dst is None:
                sys.stdout.buffer.write(blob)
                sys.stdout.buffer.flush()
                continue
            try:
                atomic_write(dst, blob)
            except OSError as e:
                raise InputError(f"cannot write {dst} ({e.strerror or e})") from None
            self.written[_key(dst)] = job.src


def _key(path: Path) -> str:
    """One spelling per file: absolute, links resolved (also for files not there yet)."""
    return os.path.normcase(str(path.resolve()))


def _quiet_torch_warnings() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@DEVICE
def encode(inputs, out, out_dir, task, quality, model, method, task_model, device):
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
    from icmcodec.registry import METHODS, default_method

    if task not in TASK_NAMES:
        _fail(f"unknown task {task!r} (one of: {', '.join(TASK_NAMES)})")
    if method is not None and method not in METHODS:
        _fail(f"unknown method {method!r} (available: {', '.join(METHODS)})")
    spec = METHODS[method] if method else default_method(task)
    if TASK_NAMES[task] not in spec.tasks:
        _fail(f"method {spec.name} does not code task {task}")
    if task_model and task == "recon":
        _fail("--task-model is for machine tasks, not recon")
    jobs = image_jobs(inputs, out, out_dir)
    outputs = Outputs(jobs)
    from icmcodec import pipeline
    from icmcodec.imageio import ImageInputError, load_rgb

    try:
        codec = pipeline.load_codec(model, device=device)
        if codec.config.get("method") != spec.name:
            _fail(f"model {codec.config.get('name')} codes with {codec.config.get('method')}, not {spec.name}")
        pipeline.check_quality(codec, quality)
        tasknet = None if task == "recon" else pipeline.load_tasknet(task, task_model, device=device)
    except (pipeline.UsageError, LookupError) as e:
        _fail(str(e))

    def work(job: Job) -> str:
        t0 = time.time()
        dst = output_path(job, out, out_dir, ".icm")
        try:
            rgb = load_rgb(job.src)
        except ImageInputError as e:
            raise InputError(str(e)) from None
        try:
            data = pipeline.encode_image(rgb, task=task, quality=quality, codec=codec, tasknet=tasknet)
        except pipeline.UsageError as e:
            raise InputError(str(e)) from None
        outputs.write(job, [(dst, data)])
        h, w = rgb.shape[:2]
        return (f"{job.src} -> {dst or 'stdout'}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, "
                f"{w}x{h}, {time.time() - t0:.2f} s")

    try:
        sys.exit(run_batch(jobs, "encode", work))
    except pipeline.UsageError as e:
        _fail(str(e))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", metavar="OUT", help="output file for a single input; '-' for stdout")
@click.option("--out-dir", type=click.Path(file_okay=False), help="write outputs here, keeping relative paths")
@DEVICE
def decode(inputs, out, out_dir, device):
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
    jobs = collect(inputs, (".icm",), stdin_is_list=False)
    if out and len(jobs) != 1:
        _fail(f"-o names one output but there are {len(jobs)} inputs; use --out-dir")
    check_out(out, out_dir)
    outputs = Outputs(jobs)
    _quiet_torch_warnings()
    from icmcodec import pipeline
    from icmcodec.entropy import CorruptStreamError

    def work(job: Job) -> str:
        try:
            data = sys.stdin.buffer.read() if job.src == "-" else Path(job.src).read_bytes()
        except OSError as e:
            raise InputError(f"cannot read ({e.strerror})") from None
        try:
            t_load = time.time()
            codec = pipeline.codec_for(bitstream.unpack(data).header, device)  # cached after the first
            t0 = time.time()
            res = pipeline.decode_bytes(data, codec=codec)
        except (bitstream.BitstreamError, CorruptStreamError, pipeline.UsageError) as e:
            raise InputError(str(e)) from None
        placed = output_files(job, out, out_dir, res.files(), res.task)
        outputs.write(job, placed)
        return (f"{job.src} -> {placed[0][0] or 'stdout'}: {res.task}, {res.bpp:.4f} bpp, {time.time() - t0:.2f} s "
                f"(model load {t0 - t_load:.2f} s)")

    sys.exit(run_batch(jobs, "decode", work))


# from the bitstream's task tags (torch-free, so `icm --help` stays instant)
MACHINE_TASKS = tuple(name for name, tag in TASK_NAMES.items() if tag != bitstream.TaskTag.RECON)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--task", required=True, type=click.Choice(MACHINE_TASKS), help="the machine task")
@click.option("-o", "--output", "out", metavar="OUT", help="output file for a single input; '-' for stdout")
@click.option("--out-dir", type=click.Path(file_okay=False), help="write outputs here, keeping relative paths")
@click.option("--model", default=None, help="task network name or folder (default: the task's own)")
@click.option("--batch", type=click.IntRange(1, 256), default=8, show_default=True,
              help="pictures per network call (same-size pictures are batched)")
@DEVICE
def analyze(inputs, task, out, out_dir, model, batch, device):
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
    from icmcodec.imageio import ImageInputError, load_rgb

    try:
        net = pipeline.load_tasknet(task, model, device=device)
    except pipeline.UsageError as e:
        _fail(str(e))
    done: dict[int, object] = {}  # job index -> output array or InputError
    index = {id(j): i for i, j in enumerate(jobs)}

    def run_chunk(start: int) -> None:
        """Load the next ``batch`` pictures and run the network on them at once."""
        chunk = list(range(start, min(start + batch, len(jobs))))
        loaded = {}
        for i in chunk:
            try:
                loaded[i] = load_rgb(jobs[i].src)
            except ImageInputError as e:
                done[i] = InputError(str(e))
        if loaded:
            for i, res in zip(loaded, net.predict(list(loaded.values()), batch=batch)):
                done[i] = res

    def work(job: Job) -> str:
        i = index[id(job)]
        if i not in done:
            run_chunk(i)
        res = done.pop(i)
        if isinstance(res, InputError):
            raise res
        placed = output_files(job, out, out_dir, net.write(res), task)
        outputs.write(job, placed)
        return f"{job.src} -> {placed[0][0] or 'stdout'}: {task}"

    sys.exit(run_batch(jobs, "analyze", work))


@main.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def info(path, as_json):
    """Print the header of an .icm file (no model is loaded)."""
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
    if as_json:
        click.echo(json.dumps(d))
        return
    for k, v in d.items():
        if k == "chunks":
            v = ", ".join(f"{x['type']} {x['bytes']} B" for x in v)
        click.echo(f"{k:13s} {v}")


def _param_count(weights: Path, kind: str = "codec") -> int:
    """Learned parameters (not tables, not statistics) from the safetensors header, without torch."""
    with open(weights, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))
    total = 0
    for k, v in meta.items():
        if k == "__metadata__":
            continue
        if (k.startswith(("float.", "exact.h_s.", "exact.log2_gain", "exact.z_median")) if kind == "codec"
                else not k.endswith(("running_mean", "running_var", "num_batches_tracked"))):
            size = 1
            for s in v["shape"]:
                size *= s
            total += size
    return total


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def models(as_json):
    """List installed models: coding models and task networks (with their clean metric)."""
    from icmcodec import zoo

    rows = []
    for m in zoo.available():
        clean = m.config.get("clean_metric") or {}
        rows.append({
            "name": m.name, "kind": m.kind, "task": m.config.get("task"),
            "method": m.config.get("method", m.kind), "quality_range": m.config.get("quality_range"),
            "params": _param_count(m.weights, m.kind), "bytes": m.bytes, "path": str(m.path),
            "clean_metric": clean or None,
        })
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no models installed", err=True)
        return
    click.echo(f"{'name':16s} {'task':8s} {'method':12s} {'quality':10s} {'params':>9s} {'bytes':>9s}  clean val")
    for r in rows:
        q = "{:g}..{:g}".format(*r["quality_range"]) if r["quality_range"] else "-"
        c = r["clean_metric"]
        cv = f"  {c['metric']} {c['value']:.3f}" if c else ""
        click.echo(f"{r['name']:16s} {r['task']:8s} {r['method']:12s} {q:10s} {r['params']:9d} {r['bytes']:9d}{cv}")


if __name__ == "__main__":
    main()
