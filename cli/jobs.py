"""Batches of the ``icm`` commands: inputs, outputs, shards, resumption, manifest.

* :func:`collect` expands files, folders and ``-`` into :class:`Job` s;
  :func:`select_shard` keeps the K-th of N disjoint parts, chosen by a stable hash of
  each job's relative path (the same split on every machine and in any listing order).
* :class:`Outputs` checks every output path of a job before any is written and writes
  them atomically; :class:`Manifest` appends one JSON line per finished job.
* :func:`run_batch` runs the jobs, goes on past failures and reports at the end (how
  many were skipped as already there, or as claimed by a concurrent worker:
  :mod:`cli.claims`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class InputError(Exception):
    """A bad input: reported in one line; exit 2 if it was the only input."""


class Skipped(str):
    """What ``work(job)`` returns for an output that is already there (``--skip-existing``)."""


class Claimed(Skipped):
    """What ``work(job)`` returns for an output another worker has claimed (:mod:`cli.claims`)."""


def claim_or_skip(claims, output: Path | None, done, label: str) -> Skipped | None:
    """For ``--skip-existing``: a :class:`Skipped` if the input's outputs are all there
    (``done()``), a :class:`Claimed` if another worker holds ``output``'s claim, else
    None with the claim taken. ``done`` is asked again once claimed: another worker may
    have finished between the look and the claim."""
    if done():
        return Skipped(f"{label}: already there")
    if not claims.take(output):
        return Claimed(f"{label}: claimed by another worker, skipped")
    return Skipped(f"{label}: already there") if done() else None


@dataclass
class Job:
    src: str  # path, or "-" for stdin bytes
    rel: Path  # relative output stem (for --out-dir)
    error: str | None = None  # found broken while listing: fails with this message


def fail(msg: str) -> None:
    click.echo(f"icm: error: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def collect(inputs: tuple[str, ...], suffixes: tuple[str, ...], stdin_is_list: bool) -> list[Job]:
    """Expand files, folders (recursively, keeping relative paths) and '-'.

    A link inside a folder that cannot be followed (a loop, or a target that is gone)
    becomes a job of its own that fails with the reason, so the batch reports it; so
    does a path (given, listed on stdin or found in a folder) that is not a regular
    file: a named pipe or a device would block the whole batch on its first read."""
    from icmcodec.imageio import not_regular

    jobs: list[Job] = []
    for item in inputs:
        if item == "-":
            if stdin_is_list:
                for line in sys.stdin:
                    line = line.rstrip("\r\n")
                    if line:
                        jobs.append(Job(line, Path(Path(line).name), not_regular(line)))
            else:
                jobs.append(Job("-", Path("stdin")))
            continue
        p = Path(item)
        if p.is_dir():
            jobs.extend(walk(p, suffixes))
        else:
            jobs.append(Job(item, Path(p.name), not_regular(item)))
    return jobs


def walk(root: Path, suffixes: tuple[str, ...]) -> list[Job]:
    """Files under ``root`` with one of ``suffixes``, sorted, following links to folders
    once (a folder reached again through a link is a loop and is reported). Entries with
    a matching suffix that are not regular files (pipes, sockets, devices) are reported
    too, never opened; claim files (``*.claim``) never match."""
    from icmcodec.imageio import not_regular

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
            elif path.suffix.lower() in suffixes:
                found.append(Job(str(path), sub, None if is_file else not_regular(path) or "not a regular file"))

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
        fail(f"-o names one output but there are {len(jobs)} inputs; use --out-dir")
    check_out(out, out_dir)
    quiet_torch_warnings()
    return jobs


def check_out(out: str | None, out_dir: str | None) -> None:
    """Usage errors about the output arguments, before any work."""
    if out and out != "-" and Path(out).is_dir():
        fail(f"-o {out} is a folder; use --out-dir for a folder")
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        fail(f"--out-dir {out_dir} is a file, not a folder")


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
        fail("no inputs found")
    failed: list[tuple[str, str, bool]] = []
    notes: list[str] = []
    skipped = claimed = 0
    progress = Progress(len(jobs), label)
    t0 = time.time()
    for job in jobs:
        try:
            if job.error:
                raise InputError(job.error)
            note = work(job)
            claimed += isinstance(note, Claimed)
            skipped += isinstance(note, Skipped) and not isinstance(note, Claimed)
            notes.append(note)
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
        why = [f"{skipped} already there"] * bool(skipped) + [f"{claimed} claimed by another worker"] * bool(claimed)
        extra = f" ({', '.join(why)}, skipped)" if why else ""
        click.echo(f"{label}: {len(jobs) - len(failed)} ok{extra}, {len(failed)} failed, {time.time() - t0:.1f} s",
                   err=True)
    if not failed:
        return EXIT_OK
    if len(jobs) == 1 and failed[0][2]:
        return EXIT_USAGE
    return EXIT_PARTIAL


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; a usage error otherwise."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        fail(f"--shard takes K/N (e.g. 2/8), not {text!r}")
    if not 1 <= k <= n:
        fail(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard_of(rel: Path, n: int) -> int:
    """The shard (1..n) a job belongs to: a stable hash of its relative path."""
    digest = hashlib.sha256(rel.as_posix().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select_shard(jobs: list[Job], shard: str | None) -> list[Job]:
    """The jobs of shard ``K/N`` (all of them without ``--shard``)."""
    kn = parse_shard(shard)
    if kn is None:
        return jobs
    k, n = kn
    return [j for j in jobs if shard_of(j.rel, n) == k]


class Manifest:
    """``--manifest FILE.jsonl``: one JSON object per finished job, appended with one
    ``write`` of one whole line, so an interrupted run leaves only whole lines (give each
    concurrent process its own manifest)."""

    def __init__(self, path: str | None):
        self.path = path
        if path is not None:
            from icmcodec.imageio import not_regular

            if (why := not_regular(path)) is not None:  # opening a pipe to write waits for a reader
                fail(f"--manifest {path}: {why.split(';')[0]}")
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
            except OSError as e:
                fail(f"--manifest {path}: cannot write ({e.strerror})")

    def add(self, record: dict) -> None:
        if self.path is None:
            return
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


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




def quiet_torch_warnings() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")




class Chunked:
    """Pictures read and processed ``size`` at a time: ``fn(pictures)`` is one network
    call for a chunk (an analysis, a prediction). ``get(job)`` gives the job's
    ``(picture, result)`` or raises the ``InputError`` of a picture that would not load.
    ``wanted(i)`` leaves jobs out of chunks (ones that will be skipped); it is asked
    only for the jobs of the chunk being loaded (it may claim them: :mod:`cli.claims`)."""

    def __init__(self, jobs: list[Job], fn, size: int, wanted=lambda i: True):
        self.jobs, self.fn, self.size, self.wanted = jobs, fn, size, wanted
        self.index = {id(j): i for i, j in enumerate(jobs)}
        self.ready: dict[int, object] = {}

    def _load(self, start: int) -> None:
        from icmcodec.imageio import ImageInputError, load_rgb

        todo = []  # the next `size` wanted jobs; `wanted` is asked lazily, as it may claim the job
        for i in range(start, len(self.jobs)):
            if len(todo) == self.size:
                break
            if i not in self.ready and not self.jobs[i].error and self.wanted(i):
                todo.append(i)
        pics = {}
        for i in todo or [start]:
            try:
                pics[i] = load_rgb(self.jobs[i].src)
            except ImageInputError as e:
                self.ready[i] = InputError(str(e))
        if pics:
            for i, res in zip(pics, self.fn(list(pics.values()))):
                self.ready[i] = (pics[i], res)

    def get(self, job: Job):
        i = self.index[id(job)]
        if i not in self.ready:
            self._load(i)
        got = self.ready.pop(i)
        if isinstance(got, InputError):
            raise got
        return got
