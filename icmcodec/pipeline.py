"""The one API the CLI and the benchmarks use: picture -> ``.icm`` bytes -> output.

``encode_image`` pads, analyses, codes and packs a container; ``decode_bytes`` checks
the container, finds everything its header names in one store lookup
(:func:`icmcodec.zoo.resolve`: the coding model, the adapter, the task network),
decodes and returns the output. Models are loaded once per (model, device) and cached.
Nothing here knows a method by name: the registry's spec and the codec's hooks
(``decodable_tasks``, ``load_adapter``, ``bound``) say what each method does.

A machine-task file of a method that codes a picture names the task network the decoder
runs on the picture (``adapter_hash``); a method with per-task adapters
(``MethodSpec.adapter``: TransTIC's and Prompt-ICM's prompt sets) names the adapter
instead, and the adapter names the base model it was made for (checked on load) and the
task network it was trained with. A recon file of a picture method can also be decoded
to any machine task: the task's default network (or ``tasknet``) runs on the picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import bitstream
from bitstream import CoderId
from icmcodec import zoo
from icmcodec.registry import METHODS, TASK_NAMES, default_method, method_by_id



class UsageError(ValueError):
    """A request the codec cannot serve (unknown task, quality out of range, ...)."""


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r} (auto, cpu or cuda)")
    return device


@lru_cache(maxsize=8)
def _load(path: str, device: str, model_hash: bytes):
    """Keyed by the file's hash too: a model file replaced in place is loaded again."""
    config, state, mhash = zoo.load_state(zoo.entry_at(path))
    spec = METHODS[config["method"]]
    return spec.build(config, state, mhash, device)


def _codec_at(entry: zoo.ModelEntry, device: str):
    if entry.config.get("method") not in METHODS:
        raise UsageError(f"model {entry.name} is of method {entry.config.get('method')!r}, which this icm does not "
                         f"implement (methods: {', '.join(METHODS)})")
    try:
        return _load(str(entry.path.resolve()), resolve_device(device), entry.hash())
    except zoo.ModelNotFoundError as e:  # a model that needs another one (MPA's base) not installed
        raise UsageError(str(e)) from None


def load_codec(model: str | None = None, *, method: str | None = None, model_hash: bytes | None = None,
               device: str = "auto", task: str = "recon"):
    """The coding model: by name or folder, by a header's hash, or the default (of
    ``method``, if given: its model for ``task`` where it has one per task). Machine
    tasks of a picture method add a task network on top."""
    entry = zoo.find(model, task=task, model_hash=model_hash, method=method)
    if method is not None and entry.config.get("method") != method:
        raise UsageError(f"model {entry.name} codes with {entry.config.get('method')}, not {method}")
    return _codec_at(entry, device)


@lru_cache(maxsize=16)
def _load_adapter(path: str, adapter_hash: bytes, codec, tasknet):
    config, state, h = zoo.load_state(zoo.entry_at(path))
    try:
        return codec.load_adapter(config, state, h, tasknet)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _adapter_at(codec, entry: zoo.ModelEntry, task: str):
    """The adapter in ``entry`` for ``codec``'s base, with the task network it names."""
    if entry.kind != "adapter":
        raise UsageError(f"{entry.name} is a {zoo.KIND_NAMES.get(entry.kind, entry.kind)}, not an adapter")
    if entry.config.get("task") != task:
        raise UsageError(f"adapter {entry.name} is for {entry.config.get('task')}, not {task}")
    if entry.config.get("method", codec.method) != codec.method:
        raise UsageError(f"adapter {entry.name} is a {entry.config.get('method')} adapter, not a {codec.method} one")
    net_hex = entry.config.get("tasknet_hash")
    net = load_tasknet(task, model_hash=bytes.fromhex(net_hex), device=str(codec.device)) if net_hex else None
    return _load_adapter(str(entry.path.resolve()), entry.hash(), codec, net)


def load_adapter(codec, task: str, *, name: str | None = None, model_hash: bytes | None = None,
                 tasknet_hash: bytes | None = None):
    """The per-task adapter of an adapter method for ``codec``'s base: by name, by the
    hash a header names, or the task's default among those made for this base (and,
    given ``tasknet_hash``, for that task network)."""
    try:
        if name is not None or model_hash is not None:
            entry = zoo.find(name, task=task, model_hash=model_hash, kind="adapter")
        else:
            found = [m for m in zoo.available() if m.kind == "adapter" and m.config.get("task") == task
                     and m.config.get("base_hash") == codec.model_hash.hex()
                     and (tasknet_hash is None or m.config.get("tasknet_hash") == tasknet_hash.hex())]
            if not found:
                raise UsageError(
                    f"no adapter for task {task} on model {codec.config.get('name')} ({codec.model_hash.hex()[:12]})"
                    + (f" and task network {tasknet_hash.hex()[:12]}" if tasknet_hash else "")
                    + f" is installed (see 'icm models'; {METHODS[codec.method].train_command} makes one)")
            entry = next((m for m in found if m.config.get("default")), found[0])
    except zoo.ModelNotFoundError as e:
        raise UsageError(str(e)) from None
    return _adapter_at(codec, entry, task)


@lru_cache(maxsize=8)
def _load_tasknet(path: str, device: str, model_hash: bytes):
    from icmcodec.tasks.predict import TaskModel

    return TaskModel.load(path, device)


def _tasknet_at(entry: zoo.ModelEntry, task: str, device: str):
    if entry.config.get("task") != task:
        raise UsageError(f"task network {entry.name} is for {entry.config.get('task')}, not {task}")
    return _load_tasknet(str(entry.path.resolve()), resolve_device(device), entry.hash())


def load_tasknet(task: str, name: str | None = None, *, model_hash: bytes | None = None, device: str = "auto"):
    """The clean-trained network of a machine task (by name, header hash or default)."""
    try:
        entry = zoo.find(name, task=task, model_hash=model_hash, kind="tasknet")
    except zoo.ModelNotFoundError as e:
        raise UsageError(str(e)) from None
    return _tasknet_at(entry, task, device)


def encoder_for(task: str = "recon", *, model: str | None = None, method: str | None = None,
                task_model: str | None = None, device: str = "auto"):
    """What an encode of ``task`` needs, once for any number of pictures: ``(codec,
    tasknet)``. The codec is ``model`` (its method unless ``method`` names another:
    an error), else the default model of ``method``, else of the task's default method
    (the measured best, :func:`icmcodec.registry.default_method`); for a machine task
    an adapter method's codec comes bound to the task's adapter (the one made for
    ``task_model`` if given), a picture method's with the task network the file will
    name (``task_model`` or the task's default)."""
    if task not in TASK_NAMES:
        raise UsageError(f"unknown task {task!r} (one of: {', '.join(TASK_NAMES)})")
    if method is not None and method not in METHODS:
        raise UsageError(f"unknown method {method!r} (available: {', '.join(METHODS)})")
    if task_model and task == "recon":
        raise UsageError("--task-model is for machine tasks, not recon")
    if method is None and model is None:
        method = default_method(task).name
    try:
        codec = load_codec(model, method=method, device=device, task=task)
    except zoo.ModelNotFoundError as e:
        raise UsageError(str(e)) from None
    spec = METHODS[codec.method]
    if TASK_NAMES[task] not in spec.tasks:
        raise UsageError(f"method {spec.name} does not code task {task}")
    if not codec.can_code(task):
        raise UsageError(f"model {codec.config.get('name')} codes {codec.config.get('task')}, not {task}")
    tasknet = None
    if task != "recon" and spec.adapter:
        net = load_tasknet(task, task_model, device=device) if task_model else None
        codec = codec.bound(load_adapter(codec, task, tasknet_hash=net.hash if net else None))
    elif task != "recon" and codec.produces == "picture":
        tasknet = load_tasknet(task, task_model, device=device)
    return codec, tasknet


@dataclass
class Decoded:
    header: bitstream.Header
    task: str
    rgb: np.ndarray | None  # the reconstruction, H x W x 3 uint8
    bpp: float
    output: np.ndarray | None = None  # the task output (machine tasks), see icmcodec.tasks.registry
    tasknet: object | None = None  # the TaskModel that produced it (its writer, labels)

    def files(self) -> dict[str, bytes]:
        """The output files as ``{suffix: bytes}`` (``.png`` for recon)."""
        if self.tasknet is None:
            from icmcodec.tasks.writers import write_recon

            return write_recon(self.rgb)
        return self.tasknet.write(self.output)


def output_suffixes(task: str) -> tuple[str, ...]:
    """The files ``decode`` writes for a task, as suffixes, main file first."""
    from icmcodec.tasks.writers import SUFFIXES

    return SUFFIXES[task]


def check_quality(codec, quality: float | None) -> float:
    """The canonical quality to code with: the model's default when None."""
    lo, hi = codec.quality_range
    q = codec.default_quality if quality is None else float(quality)
    if not lo <= q <= hi:
        raise UsageError(f"quality {q:g} outside this model's range {lo:g}..{hi:g}")
    return bitstream.canonical_quality(q)


def encode_image(rgb: np.ndarray, *, task: str = "recon", quality: float | None = None,
                 model: str | None = None, method: str | None = None, device: str = "auto", codec=None,
                 tasknet=None, bpp: float | None = None, max_bytes: int | None = None, analysis=None) -> bytes:
    """H x W x 3 uint8 RGB -> complete ``.icm`` file bytes.

    The codec is ``codec``, else ``model``, else the default model of ``method`` (or of
    the task's default method). For a machine task coded as a picture, the header
    names the task network the decoder will run (``tasknet``, default: the task's
    installed default).

    Rate control: ``max_bytes`` codes at the highest quality whose whole file fits in
    that many bytes, ``bpp`` at the highest whose file is at most that many bits per
    pixel (``quality`` is then ignored); see :func:`fit_rate`."""
    if codec is None:
        codec, net = encoder_for(task, model=model, method=method, device=device)
        tasknet = tasknet or net
    if task not in TASK_NAMES:
        raise UsageError(f"unknown task {task!r} (one of: {', '.join(TASK_NAMES)})")
    spec = METHODS[codec.method]
    if TASK_NAMES[task] not in spec.tasks:
        raise UsageError(f"method {spec.name} does not code task {task}")
    if not codec.can_code(task):
        raise UsageError(f"model {codec.config.get('name')} codes {codec.config.get('task')}, not {task}")
    adapter_hash = bytes(16)
    if task != "recon" and spec.adapter:
        ad = codec.adapter
        if ad is None or ad.task != task or (tasknet is not None and ad.tasknet_hash != tasknet.hash):
            ad = load_adapter(codec, task, tasknet_hash=tasknet.hash if tasknet is not None else None)
            codec = codec.bound(ad)
            analysis = None  # an analysis made without this adapter's encoder prompts does not apply
        adapter_hash = ad.hash
    elif task != "recon" and codec.produces == "picture":
        if tasknet is None:
            tasknet = load_tasknet(task, device=device)
        adapter_hash = tasknet.hash
    elif task != "recon" and spec.header_names == "codec":
        adapter_hash = codec.model_hash
    h, w = rgb.shape[:2]
    if h * w > bitstream.MAX_PIXELS or max(h, w) > bitstream.MAX_SIDE:
        raise UsageError(f"image is {w}x{h}, over the limits ({bitstream.MAX_PIXELS} pixels, "
                         f"{bitstream.MAX_SIDE} a side)")

    def pack(enc, q: float) -> bytes:
        header = bitstream.Header(
            method=spec.method_id, task=TASK_NAMES[task], coder=CoderId.RANGE_CATEGORICAL_V1,
            quality=q, height=h, width=w, coded_height=enc.coded_size[0], coded_width=enc.coded_size[1],
            model_hash=codec.model_hash, adapter_hash=adapter_hash,
        )
        return bitstream.pack(header, enc.chunks)

    if analysis is None:
        analysis = analyse_batch(codec, [rgb])[0]
    if bpp is not None or max_bytes is not None:
        limit = rate_limit(h * w, bpp, max_bytes)
        return fit_rate(codec, analysis, limit, pack)
    q = check_quality(codec, quality)
    return pack(codec.code(analysis, q), q)


# The budgets a rate can mean. The smallest file the format allows is its fixed header
# and CRC (no chunk at all): a smaller budget can never be met, so it is refused before
# any coding (and fit_rate never takes the logarithm of 0). A budget at or above the
# largest file the format allows cannot be exceeded: it means no limit, i.e. the
# model's top quality, for --bpp and --max-bytes alike.
MIN_FILE_BYTES = bitstream.FIXED_SIZE + 4
MAX_FILE_BYTES = bitstream.MAX_FILE_SIZE


def check_rate(bpp: float | None, max_bytes: int | None) -> None:
    """The values of ``--bpp`` / ``--max-bytes`` on their own, before any picture is read:
    ``bpp`` positive and enough for at least the largest picture icm takes,
    ``max_bytes`` at least the smallest file."""
    if bpp is not None:
        if math.isnan(bpp) or bpp <= 0:  # inf (and 1e308) mean no limit, like any budget over 2^31 bytes
            raise UsageError(f"--bpp must be a positive number, not {bpp:g}")
        if bpp * bitstream.MAX_PIXELS / 8 < MIN_FILE_BYTES:
            raise UsageError(f"--bpp {bpp:g} is below the smallest file ({MIN_FILE_BYTES} bytes) even for the "
                             f"largest picture ({bitstream.MAX_PIXELS} pixels)")
    if max_bytes is not None and max_bytes < MIN_FILE_BYTES:
        raise UsageError(f"--max-bytes {max_bytes} is below the smallest .icm file ({MIN_FILE_BYTES} bytes)")


def rate_limit(pixels: int, bpp: float | None, max_bytes: int | None) -> int:
    """The byte budget of a picture from ``--bpp`` or ``--max-bytes`` (the smaller of both),
    at most the largest file the format allows. A budget below the smallest file is a
    ``UsageError`` here, before any coding."""
    check_rate(bpp, max_bytes)
    limits = [MAX_FILE_BYTES]
    if bpp is not None:
        limits.append(int(min(bpp * pixels / 8, MAX_FILE_BYTES)))  # a float: 1e308 * pixels is inf
    if max_bytes is not None:
        limits.append(int(max_bytes))
    limit = min(limits)
    if limit < MIN_FILE_BYTES:  # only a --bpp can get here: check_rate saw --max-bytes
        raise UsageError(f"--bpp {bpp:g} gives this picture ({pixels} pixels) {limit} bytes, below the smallest "
                         f".icm file ({MIN_FILE_BYTES} bytes); nothing was coded")
    return limit


def fit_rate(codec, analysis, limit: int, pack) -> bytes:
    """The file of the highest quality (on the 1/256 grid) whose whole file is at most
    ``limit`` bytes. ``pack(encoded, quality) -> bytes``.

    One analysis, then only the quality-dependent coding per trial: the sizes are
    bracketed and the bracket narrowed by secant steps on log(size), which is nearly
    linear in the quality, with a bisection step whenever a secant step would not
    halve the bracket. Sizes grow with the quality; where they do not by a few bytes,
    the answer is still a file within the limit. ``limit`` comes from :func:`rate_limit`
    (at least the smallest file), so every logarithm here is of a positive size."""
    if limit < MIN_FILE_BYTES:
        raise UsageError(f"a budget of {limit} bytes is below the smallest .icm file ({MIN_FILE_BYTES} bytes)")
    lo_q, hi_q = codec.quality_range
    lo, hi = int(np.ceil(lo_q * 256)), int(np.floor(hi_q * 256))
    tried: dict[int, bytes] = {}

    def size(qi: int) -> int:
        if qi not in tried:
            tried[qi] = pack(codec.code(analysis, qi / 256), qi / 256)
        return len(tried[qi])

    # first guess: the default quality; then step the bracket open with a typical slope
    g = int(round(codec.default_quality * 256))
    g = min(max(g, lo), hi)
    slope = math.log(2) / 256  # a doubling of the size per quality unit, corrected by the first steps
    if size(g) <= limit:
        good, bad = g, None
    else:
        good, bad = None, g
    while good is None or bad is None:
        ref = good if good is not None else bad
        step = int(np.clip((math.log(limit) - math.log(size(ref))) / slope, -hi + lo, hi - lo))
        step = step if step else (1 if good is not None else -1)
        nxt = min(max(ref + step, lo), hi)
        if nxt == ref:  # at the end of the range
            break
        s = size(nxt)
        slope = max(abs(math.log(s) - math.log(size(ref))) / abs(nxt - ref), 1e-4)
        if s <= limit:
            good = nxt if good is None or nxt > good else good
        else:
            bad = nxt if bad is None or nxt < bad else bad
    if good is None:
        raise UsageError(f"even the lowest quality ({lo / 256:g}) needs {size(lo)} bytes, over the budget of {limit}")
    if bad is None:
        return tried[good]  # the highest quality fits
    while bad - good > 1:
        a, b = math.log(size(good)), math.log(size(bad))
        t = (math.log(limit) - a) / (b - a) if b > a else 0.5
        g = good + int(round(t * (bad - good)))
        g = min(max(g, good + 1), bad - 1)
        if min(g - good, bad - g) < (bad - good) // 4:  # a lopsided secant step: bisect instead
            g = (good + bad) // 2
        if size(g) <= limit:
            good = g
        else:
            bad = g
    return tried[good]


def analyse_batch(codec, rgbs: list):
    """``codec.analyse_batch``, with what an encoder needs beyond its model file (a
    method's backbone) missing or wrong reported as a :class:`UsageError`."""
    try:
        return codec.analyse_batch(rgbs)
    except zoo.ModelNotFoundError as e:
        raise UsageError(str(e)) from None


def codec_for(header: bitstream.Header, device: str = "auto"):
    """The installed codec a file's header names (by method and model hash); cached."""
    try:
        spec = method_by_id(header.method)
        entry = zoo.resolve(header.model_hash).model
    except (zoo.ModelNotFoundError, LookupError) as e:
        raise UsageError(str(e)) from None
    codec = _codec_at(entry, device)
    if codec.method != spec.name:
        raise UsageError(f"the file says method {spec.name}, but the model it names is a {codec.method} model")
    return codec


def decode_bytes(data: bytes, *, task: str | None = None, device: str = "auto", codec=None,
                 tasknet=None, strength: float | None = None) -> Decoded:
    """Complete ``.icm`` bytes -> an output. ``task`` asks a file for one of the tasks it
    serves (the codec's ``decodable_tasks``; default: the header's); for a recon file
    decoded to a machine task, ``tasknet`` chooses the network (default: the task's
    own). ``strength``: the task strength of a method whose decoder has one (MPA's rho;
    default: the adapter's recorded one). Raises ``bitstream.BitstreamError`` (or ``CorruptStreamError``) for a damaged
    file and ``UsageError`` for one this installation cannot decode."""
    c = bitstream.unpack(data)
    hd = c.header
    own = hd.task.name.lower()
    task = own if task is None else task
    try:
        spec = method_by_id(hd.method)
        # everything the header names, in one lookup: model, adapter, task network
        found = zoo.resolve(hd.model_hash if codec is None else None, hd.adapter_hash, spec.header_names)
    except (zoo.ModelNotFoundError, LookupError) as e:
        raise UsageError(str(e)) from None
    if codec is None:
        codec = _codec_at(found.model, device)
    elif codec.model_hash != hd.model_hash:
        raise UsageError("the file was made with another model than the one given")
    if spec.header_names == "codec" and hd.task != bitstream.TaskTag.RECON and hd.adapter_hash != hd.model_hash:
        raise bitstream.UnknownValueError(f"a {spec.name} file's adapter_hash must repeat its model_hash")
    if codec.method != spec.name:
        raise UsageError(f"the file says method {spec.name}, but the model it names is a {codec.method} model")
    # rule 11 of the spec, before anything else is loaded for the file: the method codes
    # the file's task and its chunks are exactly the method's (decode_chunks checks again)
    if hd.task not in spec.tasks:
        raise bitstream.UnsupportedFeatureError(f"method {codec.method} does not code task {own}")
    codec.payloads(c.chunks)
    serves = codec.decodable_tasks(hd)
    if task not in serves:
        raise UsageError(f"the file is coded for {own}; it can give {', '.join(serves)}, not {task}")
    dev = str(getattr(codec, "device", device))
    named = found.tasknet if task == own else None  # a recon file names none: the task's default
    if found.adapter is not None:
        if codec.adapter is None or codec.adapter.hash != hd.adapter_hash:
            codec = codec.bound(_adapter_at(codec, found.adapter, own))
    if codec.adapters_serve_tasks and task not in (own, "recon"):
        # a file that serves tasks beyond its own (MPA: one stream for every task): the
        # task's installed adapter for the file's model, with the network it was made for
        ad = load_adapter(codec, task)
        codec = codec.bound(ad)
        if ad.tasknet_hash is not None:
            try:
                named = zoo.find(task=task, model_hash=ad.tasknet_hash, kind="tasknet")
            except zoo.ModelNotFoundError as e:
                raise UsageError(str(e)) from None
    try:
        codec = codec.for_task(task, strength)
    except ValueError as e:
        raise UsageError(str(e)) from None
    net = None
    if task != "recon" and codec.produces == "picture":
        if tasknet is not None:
            if named is not None and tasknet.hash != named.hash():
                raise UsageError("the file was made for another task network than the one given")
            if tasknet.spec.name != task:
                raise UsageError(f"the task network given is for {tasknet.spec.name}, not {task}")
            net = tasknet
        elif named is not None:
            net = _tasknet_at(named, task, dev)
        else:
            net = load_tasknet(task, device=dev)
    lo, hi = codec.quality_range
    if not lo <= hd.quality <= hi:
        raise bitstream.LimitError(f"quality {hd.quality:g} is outside the range {lo:g}..{hi:g} of the model it names")
    if codec.produces != "picture":
        # the method's decoder finishes the task itself (Prompt-ICM: prompts and head on
        # the task network's later stages; DoRA-ICM: its own decoder); the adapter, or a
        # method without adapters its codec, writes the output
        writer = codec.adapter if spec.adapter else codec
        if writer is None:
            raise UsageError("the file names no adapter to decode its task with")
        out = codec.decode_chunks(hd, c.chunks)
        return Decoded(hd, task, None, bitstream.bits_per_pixel(c), output=out, tasknet=writer)
    rgb = codec.decode_chunks(hd, c.chunks)
    res = Decoded(hd, task, rgb, bitstream.bits_per_pixel(c))
    if net is not None:
        res.output, res.tasknet = net.predict([rgb])[0], net
    return res
