"""The one codec interface every method implements, and what it hands back.

The pipeline (and through it the CLI and the benchmarks) talks to every method the same
way:

* ``analyse(rgb)`` once, then ``code(analysis, quality) -> Encoded`` for any number
  of qualities: the typed chunks of one picture, the coded size, and the symbols
  (``encode_picture`` does both; rate control repeats only ``code``);
* ``decode_chunks(header, chunks)``: what the method produces, per ``produces``: a
  picture (``"picture"``: H x W x 3 uint8; for a machine task the pipeline then runs the
  task network the file names), backbone features (``"features"``: a decoder-side head
  finishes the task) or the task output itself (``"task"``).

Big pictures go through :mod:`icmcodec.tiling` inside each method. A codec is built
from a shipped model folder (``config.json`` + ``model.safetensors``) by the registry
(:meth:`icmcodec.registry.MethodSpec.build`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

import bitstream
from icmcodec.exact import EXTRAPOLATE_LEVELS
from icmcodec.methods.spec import default_serves


@dataclass
class Encoded:
    coded_size: tuple[int, int]
    chunks: list[bitstream.Chunk]
    symbols: dict[str, np.ndarray] = field(default_factory=dict)


class Codec:
    """Base of every method's coding-time codec (see the module docstring)."""

    method: str = ""
    produces: str = "picture"
    levels: int = 1  # trained quality levels 0..levels-1
    device = "cpu"  # where its networks run (a torch.device, or its name)
    # the payload chunks every file of the method has, in order (rule 11 of the spec)
    chunk_layout: tuple[bitstream.ChunkType, ...] = (bitstream.ChunkType.HYPER, bitstream.ChunkType.LATENT)

    def __init__(self, config: dict, model_hash: bytes):
        self.config = config
        self.model_hash = model_hash

    # a file serves tasks beyond its own through their installed adapters (MPA: one stream,
    # a path set per task), not through the task's default network on its picture
    adapters_serve_tasks = False

    # the per-task adapter bound on (see ``MethodSpec.adapter``: a prompt set, DoRA
    # weights, a path set ...), or None; :meth:`bound` gives a copy with one on
    adapter = None

    def bound(self, adapter) -> "Codec":
        """This codec with a per-task adapter on (methods with adapters override it)."""
        raise NotImplementedError(f"method {self.method} has no per-task adapters")

    def load_adapter(self, config: dict, state: dict, model_hash: bytes, tasknet=None):
        """A per-task adapter from its model folder's config and tensors, for this base
        (``tasknet``: the loaded task network the adapter names, for methods whose
        adapter works on it). ``ValueError`` if it does not fit."""
        raise NotImplementedError(f"method {self.method} has no per-task adapters")

    def can_code(self, task: str) -> bool:
        """Whether this model codes ``task`` (the method's spec lists what the method
        codes; a method with one model per task narrows it to the model's own)."""
        return True

    def write(self, output: np.ndarray) -> dict[str, bytes]:
        """The output files of a method whose decoder gives the task and that has no
        adapter to write them (``produces == "task"``)."""
        raise NotImplementedError(f"method {self.method} writes its outputs through its adapter or task network")

    def decodable_tasks(self, header: bitstream.Header) -> tuple[str, ...]:
        """The outputs a file of this method can give, its own task first (the spec's
        "tasks a file serves", :func:`icmcodec.methods.spec.default_serves`; a method with
        another rule overrides this and declares its ``serves``)."""
        return default_serves(self.produces, header)

    def for_task(self, task: str, strength: float | None = None) -> "Codec":
        """This codec set up to decode a file to ``task`` (after its adapter is bound).
        ``strength``: a method whose decoder has a task strength (MPA's rho) takes it;
        the others refuse one."""
        if strength is not None:
            raise ValueError(f"method {self.method} has no decode-time strength")
        return self

    @property
    def quality_range(self) -> tuple[float, float]:
        """Trained levels span 0..levels-1; a model's config may extend the low end
        (extrapolated gains, see ``exact.quality_log2_gain``)."""
        top = float(self.levels - 1)
        lo, hi = self.config.get("quality_range", (0.0, top))
        return (max(float(lo), -float(EXTRAPOLATE_LEVELS)), min(float(hi), top))

    @property
    def default_quality(self) -> float:
        lo, hi = self.quality_range
        return float(self.config.get("default_quality", (lo + hi) / 2))

    def analyse(self, rgb: np.ndarray):
        """The quality-independent part of an encode (transforms, side information)."""
        raise NotImplementedError

    def analyse_batch(self, rgbs: list[np.ndarray]) -> list:
        """:meth:`analyse` of several pictures (methods that can batch override it)."""
        return [self.analyse(rgb) for rgb in rgbs]

    def code(self, analysis, quality: float) -> Encoded:
        """The chunks of an analysed picture at one quality (rate control calls this
        many times for one analysis)."""
        raise NotImplementedError

    def encode_picture(self, rgb: np.ndarray, quality: float, task: str = "recon") -> Encoded:
        return self.code(self.analyse(rgb), quality)

    def decode_chunks(self, header: bitstream.Header, chunks: list[bitstream.Chunk]):
        raise NotImplementedError

    def payloads(self, chunks: list[bitstream.Chunk]) -> list[bytes]:
        """The payloads of a file's chunks in :attr:`chunk_layout` order, after checking
        that they are exactly the method's (rule 11 of the spec; informative META chunks
        aside): a chunk type the method does not use is ``UnsupportedFeatureError``, a
        missing, repeated or misplaced one ``LengthError``."""
        found = [c for c in chunks if c.type != bitstream.ChunkType.META]
        layout = tuple(self.chunk_layout)
        for c in found:
            if c.type not in layout:
                raise bitstream.UnsupportedFeatureError(
                    f"method {self.method} does not use {bitstream.ChunkType(c.type).name.lower()} chunks")
        types = tuple(c.type for c in found)
        if types != layout:
            def names(ts):
                return ", ".join(bitstream.ChunkType(t).name.lower() for t in ts) or "none"
            raise bitstream.LengthError(f"method {self.method} writes the chunks {names(layout)}, "
                                        f"the file has {names(types)}")
        return [c.data for c in found]


class AdapterBinding:
    """For a codec with per-task adapters (TransTIC, Prompt-ICM): a copy with another
    adapter bound on (shallow: weights are shared, so a loaded codec is never switched
    globally), and the check that an adapter was made for this base."""

    def bound(self, adapter):
        out = copy.copy(self)
        out.adapter = adapter
        return out

    def check_base(self, config: dict) -> None:
        if bytes.fromhex(config["base_hash"]) != self.model_hash:
            raise ValueError(f"adapter {config.get('name')} was made for base {config['base_hash'][:12]}, "
                             f"not for {self.model_hash.hex()[:12]}")
