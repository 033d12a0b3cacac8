"""The ``.icm`` container format, version 1.1. This docstring is the normative spec.

Pure Python (``struct`` and ``zlib``): no torch, no numpy, no ``icmcodec`` import, so
``icm info`` is instant and other tools can read headers with the standard library.

Layout
------
All integers are little-endian. A file is ``header | chunk table | payloads | crc``::

    offset size  field
    0      8     magic            b"\\x89ICM\\r\\n\\x1a\\n"  (non-ASCII first byte; the
                                  CR-LF / ^Z / LF tail catches text-mode mangling, as PNG)
    8      1     major            format major version; a reader refuses a major it
                                  does not know (UnsupportedVersionError)
    9      1     minor            minor version; newer minors only add optional chunks
    10     2     header_size      bytes from offset 0 to the end of the chunk table
    12     8     total_size       size of the whole file in bytes, crc included
    20     2     method           MethodId
    22     2     task             TaskTag
    24     2     coder            CoderId (the entropy coder and its table format)
    26     2     flags            bit field, all bits reserved (must be 0 in 1.0)
    28     8     quality          float64 on the 1/256 grid (``round(quality * 256) / 256``,
                                  the value the codec used), ``|quality| <= MAX_QUALITY``
    36     4     height           original image height in pixels (>= 1)
    40     4     width            original image width in pixels (>= 1)
    44     4     coded_height     padded height the latents were computed on: height
                                  rounded up to a multiple of ``PAD_UNIT`` (64)
    48     4     coded_width      padded width, the same rule
    52     16    model_hash       first 16 bytes of SHA-256 of the base model file
    68     16    adapter_hash     first 16 bytes of SHA-256 of the per-task adapter the
                                  decoder needs: the task adapter (a prompt set, DoRA weights, ...) of the
                                  method, or, for methods that code a picture
                                  (hyperprior, context), the task network it runs on
                                  the picture; 16 zero bytes for none (recon)
    84     2     chunk_count      number of chunk table entries (<= MAX_CHUNKS)
    86     2     reserved         0
    88     8*n   chunk table      per chunk: u16 type (ChunkType), u16 chunk flags
                                  (bit 0: required; bits 1-15 reserved, 0), u32
                                  payload length
    ...          payloads         in chunk-table order, back to back
    end-4  4     crc              CRC-32 (zlib) of every preceding byte of the file

The CRC-32 detects every single-bit change anywhere in the file (and every burst of
up to 32 bits). bpp as ``icm`` reports it is ``8 * total_size / (height * width)``.

Reading rules (each failure raises its own subclass of ``BitstreamError``):

1. Fewer bytes than the magic, or a wrong magic: ``BadMagicError`` (a strict prefix of
   the magic is reported as ``TruncatedError``).
2. A major version other than ``MAJOR``: ``UnsupportedVersionError``.
3. Fewer bytes than the fixed header or the chunk table: ``TruncatedError``.
4. Limits, checked before anything is allocated: ``height``, ``width`` in
   ``1..MAX_SIDE``, ``height * width <= MAX_PIXELS``, coded sizes exactly the padding
   rule above (so every array a decoder allocates follows from the picture size),
   ``chunk_count <= MAX_CHUNKS``, ``total_size <= MAX_FILE_SIZE``, quality finite, on
   the 1/256 grid and ``|quality| <= MAX_QUALITY``: ``LimitError``.
5. The file is shorter than ``total_size``: ``TruncatedError``; longer:
   ``TrailingDataError``.
6. Header size or chunk lengths that do not add up to ``total_size``:
   ``LengthError``.
7. CRC mismatch: ``ChecksumError``.
8. An unknown enum value in method, task or coder: ``UnknownValueError``; nonzero
   reserved flags: ``UnknownValueError``. A method the file's minor version does not
   define (``CONTEXT`` in a file that says 1.0): ``UnknownValueError``.
   ``adapter_hash`` is 16 zero bytes if and only if the task is ``RECON``: a recon file
   names no adapter, a machine-task file always names the one its decoder needs (the
   task network or the adapter, see below); either way round: ``UnknownValueError``.
9. A chunk of a type this reader does not know is skipped if its ``required`` flag is
   clear and the file's minor version is newer than the reader's (a newer minor version
   may add those), refused with ``UnsupportedFeatureError`` if the flag is set, and
   refused with ``UnknownValueError`` in a file of the reader's own or an older minor
   (which defines no such type). Chunk type 0 is never valid: ``UnknownValueError``.
10. Chunk flags: bits 1-15 are reserved and must be 0 (``UnknownValueError``). ``HYPER``,
    ``LATENT`` and ``SIDE`` chunks are required (bit 0 set), a ``META`` chunk is
    optional (bit 0 clear), at most one, and its payload is UTF-8 JSON; anything else:
    ``UnknownValueError``.
11. The payload chunks (every known type but ``META``) are exactly the ones the
    file's method writes, in its order (see "Methods and their payloads"): a chunk the
    method does not use, such as a ``SIDE`` chunk in a hyperprior file, is refused
    with ``UnsupportedFeatureError``, a missing or repeated one with ``LengthError``.
    A file whose task its method does not code (``RECON`` for ``PROMPT_ICM``) is refused
    with ``UnsupportedFeatureError``. The container checks rules 1-10; the method's
    decoder (``icmcodec``) checks rule 11, before it decodes anything.

What a decoder guarantees beyond these rules (``icmcodec``): every entropy-coded
payload must be *canonical*, exactly the bytes the encoder writes for the symbols it
decodes to, or it is refused (``CorruptStreamError``); so a payload cut short, padded,
extended, emptied or made for other tables is refused, not decoded. A payload that is
canonical but was never written for this picture (the hyper chunk of another file of the
same coded size, say) decodes to *some* picture of the header's size: the format cannot
tell it from a real one. Either way decoding takes time and memory bounded by the
picture size in the header, never by the payload.

Versions. A reader accepts every minor version of its major and refuses the rest.
Readers after icm 0.2.0 enforce rules 8-11 as written above; the readers up to 0.2.0
let through some files that break them (a recon file with a non-zero ``adapter_hash``, a
machine-task file with a zero one, a chunk the method ignores, reserved chunk flag bits
set, an unknown optional chunk type in a file of their own minor). The writers never
write such files, so every file they made is still read.

* 1.0: method hyperprior; one HYPER and one LATENT chunk.
* 1.1: adds method ``CONTEXT`` (6). Its LATENT chunk is one range-coded stream of
  several *segments* (channel slices, each in two checkerboard passes; see
  ``icmcodec.methods.context``), each segment coded as a whole 1.0 stream is. A 1.0
  reader refuses such a file by its method id (``UnknownValueError``). Writers write
  1.1 for every file; every 1.0 file is a valid 1.1 file.

Methods and their payloads (all 1.x): ``HYPERPRIOR`` (1), ``TRANSTIC`` (2) and
``PROMPT_ICM`` (3) write one HYPER and one LATENT chunk, in this order, each one 1.0
stream; ``CONTEXT`` (6) the same two chunks, its LATENT as above. No 1.x method writes a
SIDE chunk. TransTIC and Prompt-ICM name their per-task adapter in
``adapter_hash`` (16 zero bytes: TransTIC's plain TIC picture). A Prompt-ICM payload codes
a backbone's stage-1 features, not a picture: its decoder gives the task of the header
and nothing else. ``DORA_ICM`` (4) writes one HYPER and two LATENT chunks, in this order:
the LATENT chunks are the two checkerboard passes (every channel slice's anchors, then
every slice's other positions), each one range-coded stream of segments as ``CONTEXT``'s
(one segment per slice); its model is one per task, so its files (never ``RECON``) name
that model in ``model_hash`` and repeat it in ``adapter_hash``; its decoder gives the task
of the header and nothing else. ``MPA`` (5) writes one HYPER and one LATENT chunk, the
base TIC model's stream exactly (its encoder is the base's); ``model_hash`` names the MPA
model, a binding whose weights file holds the base's hash; a machine-task file's
``adapter_hash`` names the path set of the header's task (its default output), a
``RECON`` file's is 16 zero bytes; the coded stream is the same whatever the header's
task. ``PRIVATE`` (240) is never written by icm: it is the id of a method a
package outside icm registers at run time (an experiment, the test suite's own method),
so such files decode only where that package is installed.

The tasks a file serves. The header's task is the file's *default* output (what
``icm decode`` gives without ``--task``) and, for a machine task, what ``adapter_hash``
names the network or adapter for; the header lists no other tasks. Which other outputs a
file can give follows from its method (the method's ``decodable_tasks``), so a reader
decides without new fields and every file made so far reads as before:

* a method that codes a picture (``HYPERPRIOR``, ``CONTEXT``, ``TRANSTIC``): a ``RECON``
  file serves ``recon`` and every machine task, each through the task's default network
  at decode time ("code once for people, analyse later"); a machine-task file serves its
  task (through the network or adapter it names) and ``recon`` (the picture it decodes
  to);
* a method that codes features or the task itself (``PROMPT_ICM``, ``DORA_ICM``): the header's task
  only;
* a method whose one stream serves several tasks (``MPA``): the header's task, ``recon``
  (the base's picture) and every task for which a path set made for its model is
  installed, sets installed after the file was made included; the header's task is the
  default. ``icm info`` lists them.

The enums below are frozen: every value is explicit, none is ever derived from list
order, and a retired value is never reused.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC = b"\x89ICM\r\n\x1a\n"
MAJOR = 1
MINOR = 1

MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 26
MAX_CHUNKS = 64
MAX_FILE_SIZE = 1 << 31
MAX_QUALITY = 64.0
PAD_UNIT = 64  # every method of format 1.x codes the picture padded to multiples of this

_FIXED = struct.Struct("<8sBBHQHHHHdIIII16s16sHH")
_CHUNK = struct.Struct("<HHI")
FIXED_SIZE = _FIXED.size  # 88
_CRC = struct.Struct("<I")
CHUNK_REQUIRED = 1


class TaskTag(IntEnum):
    """What the decoder produces. Frozen numbering."""

    RECON = 0
    SEMSEG = 1
    DEPTH = 2
    BOUNDARY = 3
    SALIENCY = 4
    CLS = 5
    NORMAL = 6


class MethodId(IntEnum):
    """Which codec made the file. Frozen numbering; 0 is never valid."""

    HYPERPRIOR = 1
    TRANSTIC = 2
    PROMPT_ICM = 3
    DORA_ICM = 4
    MPA = 5
    CONTEXT = 6  # format 1.1: the hyperprior with checkerboard and channel-slice context
    PRIVATE = 240  # a method registered at run time by a package outside icm; icm never writes it


def method_name(mid: "MethodId | int") -> str:
    """A method's one spelling (CLI, manifests, ``icm info``, messages): the id's name in
    lower case with hyphens (``PROMPT_ICM`` -> ``prompt-icm``)."""
    return MethodId(mid).name.lower().replace("_", "-")


class CoderId(IntEnum):
    """Entropy coder and table format. Frozen numbering; 0 is never valid.

    RANGE_CATEGORICAL_V1: constriction's ``queue.RangeEncoder`` (32-bit words, stored
    ``<u4``) over ``Categorical(perfect=False)`` models built from integer count tables
    baked into the model file; symbols grouped by table index in ascending order,
    out-of-table values escaped and appended (see ``icmcodec.entropy``).
    """

    RANGE_CATEGORICAL_V1 = 1


class ChunkType(IntEnum):
    """Payload kinds. Frozen numbering; 0 is never valid."""

    HYPER = 1  # range-coded hyper-latent z
    LATENT = 2  # range-coded latent y (may repeat, in order)
    SIDE = 3  # method-specific side information
    META = 4  # optional UTF-8 JSON, informative only


_KNOWN_CHUNKS = frozenset(int(t) for t in ChunkType)


class BitstreamError(ValueError):
    """Base class: the bytes are not a valid .icm file."""


class BadMagicError(BitstreamError):
    pass


class UnsupportedVersionError(BitstreamError):
    pass


class TruncatedError(BitstreamError):
    pass


class TrailingDataError(BitstreamError):
    pass


class LengthError(BitstreamError):
    pass


class LimitError(BitstreamError):
    pass


class ChecksumError(BitstreamError):
    pass


class UnknownValueError(BitstreamError):
    pass


class UnsupportedFeatureError(BitstreamError):
    pass


@dataclass
class Chunk:
    type: int
    data: bytes
    required: bool = True


@dataclass
class Header:
    method: MethodId
    task: TaskTag
    coder: CoderId
    quality: float
    height: int
    width: int
    coded_height: int
    coded_width: int
    model_hash: bytes
    adapter_hash: bytes = bytes(16)
    flags: int = 0
    major: int = MAJOR
    minor: int = MINOR

    def as_dict(self) -> dict:
        return {
            "format": f"{self.major}.{self.minor}",
            "method": method_name(self.method),
            "task": self.task.name.lower(),
            "coder": self.coder.name.lower(),
            "quality": self.quality,
            "height": self.height,
            "width": self.width,
            "coded_height": self.coded_height,
            "coded_width": self.coded_width,
            "model_hash": self.model_hash.hex(),
            "adapter_hash": None if self.adapter_hash == bytes(16) else self.adapter_hash.hex(),
            "flags": self.flags,
        }


@dataclass
class Container:
    header: Header
    chunks: list[Chunk] = field(default_factory=list)
    total_size: int = 0

    def get(self, ctype: ChunkType) -> list[bytes]:
        return [c.data for c in self.chunks if c.type == ctype]


def canonical_quality(q: float) -> float:
    """The 1/256 grid every quality is snapped to before use."""
    if not math.isfinite(q) or abs(q) > MAX_QUALITY:
        raise ValueError(f"quality must be a finite number in -{MAX_QUALITY:g}..{MAX_QUALITY:g}")
    return round(q * 256) / 256


def coded_size(h: int, w: int) -> tuple[int, int]:
    """The padded size a picture of ``h`` x ``w`` is coded at (the rule of the spec)."""
    return h + (-h) % PAD_UNIT, w + (-w) % PAD_UNIT


def _check_limits(h: int, w: int, ch: int, cw: int) -> None:
    for name, v in (("height", h), ("width", w)):
        if not 1 <= v <= MAX_SIDE:
            raise LimitError(f"{name} {v} outside 1..{MAX_SIDE}")
    if h * w > MAX_PIXELS:
        raise LimitError(f"{w}x{h} is over the limit of {MAX_PIXELS} pixels")
    if (ch, cw) != coded_size(h, w):
        want = coded_size(h, w)
        raise LimitError(f"coded size {cw}x{ch} does not follow from the picture size {w}x{h} "
                         f"(must be {want[1]}x{want[0]})")


def _check_quality(q: float) -> None:
    if not math.isfinite(q):
        raise LimitError("quality is not a finite number")
    if abs(q) > MAX_QUALITY:
        raise LimitError(f"quality {q:g} outside -{MAX_QUALITY:g}..{MAX_QUALITY:g}")
    if round(q * 256) != q * 256:
        raise LimitError(f"quality {q!r} is not on the 1/256 grid")


def pack(header: Header, chunks: list[Chunk]) -> bytes:
    """Serialize a container; validates everything a reader would."""
    _check_limits(header.height, header.width, header.coded_height, header.coded_width)
    if len(chunks) > MAX_CHUNKS:
        raise LimitError(f"{len(chunks)} chunks, limit {MAX_CHUNKS}")
    if len(header.model_hash) != 16 or len(header.adapter_hash) != 16:
        raise ValueError("hashes must be 16 bytes")
    _check_fields(Header(**{**header.__dict__, "major": MAJOR, "minor": MINOR}))
    for c in chunks:  # known types (a test may write a type of a later minor)
        if int(c.type) in _KNOWN_CHUNKS:
            _check_chunk(int(c.type), CHUNK_REQUIRED if c.required else 0, c.data, MINOR)
    if sum(int(c.type) == ChunkType.META for c in chunks) > 1:
        raise UnknownValueError("more than one meta chunk")
    header_size = FIXED_SIZE + _CHUNK.size * len(chunks)
    total = header_size + sum(len(c.data) for c in chunks) + _CRC.size
    if total > MAX_FILE_SIZE:
        raise LimitError(f"file would be {total} bytes, limit {MAX_FILE_SIZE}")
    parts = [
        _FIXED.pack(
            MAGIC, MAJOR, MINOR, header_size, total, int(MethodId(header.method)),
            int(TaskTag(header.task)), int(CoderId(header.coder)), header.flags,
            canonical_quality(header.quality), header.height, header.width,
            header.coded_height, header.coded_width, header.model_hash,
            header.adapter_hash, len(chunks), 0,
        )
    ]
    for c in chunks:
        parts.append(_CHUNK.pack(int(c.type), CHUNK_REQUIRED if c.required else 0, len(c.data)))
    parts.extend(c.data for c in chunks)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def _enum(cls, v: int, what: str):
    try:
        return cls(v)
    except ValueError:
        raise UnknownValueError(f"unknown {what} id {v}") from None


def read_header(data: bytes) -> tuple[Header, int, int, int]:
    """Parse and check the fixed header: (header, header_size, total_size, chunk_count).

    Needs only the first ``FIXED_SIZE`` bytes; checks rules 1-4 of the spec and the
    header fields of rule 8.
    """
    if len(data) < len(MAGIC):
        if MAGIC.startswith(bytes(data)) and data:
            raise TruncatedError(f"file is {len(data)} bytes, shorter than the magic")
        raise BadMagicError("not an .icm file (bad magic)")
    if data[: len(MAGIC)] != MAGIC:
        raise BadMagicError("not an .icm file (bad magic)")
    if len(data) < len(MAGIC) + 1:
        raise TruncatedError("file ends inside the header")
    major = data[len(MAGIC)]
    if major != MAJOR:
        raise UnsupportedVersionError(f"format version {major}.x is not supported (this reader: {MAJOR}.{MINOR})")
    if len(data) < FIXED_SIZE:
        raise TruncatedError(f"file ends inside the header ({len(data)} of {FIXED_SIZE} bytes)")
    (_, major, minor, header_size, total, method, task, coder, flags, quality, h, w, ch, cw,
     mhash, ahash, n_chunks, reserved) = _FIXED.unpack_from(data, 0)
    _check_limits(h, w, ch, cw)
    if n_chunks > MAX_CHUNKS:
        raise LimitError(f"{n_chunks} chunks, limit {MAX_CHUNKS}")
    if total > MAX_FILE_SIZE:
        raise LimitError(f"declared size {total} bytes, limit {MAX_FILE_SIZE}")
    _check_quality(quality)
    header = Header(
        method=_enum(MethodId, method, "method"), task=_enum(TaskTag, task, "task"),
        coder=_enum(CoderId, coder, "coder"), quality=quality, height=h, width=w,
        coded_height=ch, coded_width=cw, model_hash=mhash, adapter_hash=ahash, flags=flags,
        major=major, minor=minor,
    )
    if reserved != 0 or flags != 0:
        raise UnknownValueError("reserved header bits are set")
    _check_fields(header)
    return header, header_size, total, n_chunks


def _check_fields(header: Header) -> None:
    """The header fields of rule 8 that depend on each other."""
    if header.method == MethodId.CONTEXT and header.minor < 1:
        raise UnknownValueError(f"method context does not exist in format {header.major}.{header.minor} "
                                "(added in 1.1)")
    if (header.task == TaskTag.RECON) != (header.adapter_hash == bytes(16)):
        raise UnknownValueError("a recon file must have 16 zero bytes as adapter_hash" if header.task == TaskTag.RECON
                                else f"a {header.task.name.lower()} file must name its task network or adapter "
                                     "in adapter_hash, not 16 zero bytes")


def _check_chunk(ctype: int, cflags: int, payload: bytes, minor: int) -> bool:
    """Rules 9 and 10 for one chunk table entry: True to keep it, False to skip it."""
    if cflags & ~CHUNK_REQUIRED:
        raise UnknownValueError(f"chunk flags 0x{cflags:04x}: bits 1-15 are reserved")
    required = bool(cflags & CHUNK_REQUIRED)
    if ctype not in _KNOWN_CHUNKS:
        if ctype == 0:
            raise UnknownValueError("chunk type 0 is never valid")
        if required:
            raise UnsupportedFeatureError(f"required chunk type {ctype} is not supported by this reader")
        if minor <= MINOR:
            raise UnknownValueError(f"chunk type {ctype} does not exist in format {MAJOR}.{minor}")
        return False  # optional chunk from a newer minor version
    if required != (ctype != ChunkType.META):
        raise UnknownValueError(f"a {ChunkType(ctype).name.lower()} chunk must be "
                                + ("optional" if ctype == ChunkType.META else "required"))
    if ctype == ChunkType.META:
        try:
            json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UnknownValueError("the meta chunk is not UTF-8 JSON") from None
    return True


def unpack(data: bytes) -> Container:
    """Parse and fully verify a container (rules 1-10; rule 11 is the method's)."""
    data = bytes(data)
    header, header_size, total, n_chunks = read_header(data)
    if header_size != FIXED_SIZE + _CHUNK.size * n_chunks:
        raise LengthError(f"header size {header_size} does not match {n_chunks} chunks")
    if len(data) < total:
        raise TruncatedError(f"file is {len(data)} bytes, header says {total}")
    if len(data) > total:
        raise TrailingDataError(f"{len(data) - total} bytes after the end of the file")
    if total < header_size + _CRC.size:
        raise LengthError("declared size smaller than the header")
    entries = [_CHUNK.unpack_from(data, FIXED_SIZE + i * _CHUNK.size) for i in range(n_chunks)]
    if header_size + sum(e[2] for e in entries) + _CRC.size != total:
        raise LengthError("chunk lengths do not add up to the file size")
    (crc,) = _CRC.unpack_from(data, total - _CRC.size)
    if zlib.crc32(data[: total - _CRC.size]) != crc:
        raise ChecksumError("checksum mismatch: the file is damaged")
    chunks, pos = [], header_size
    for ctype, cflags, length in entries:
        payload = data[pos : pos + length]
        pos += length
        if _check_chunk(ctype, cflags, payload, header.minor):
            chunks.append(Chunk(ChunkType(ctype), payload, bool(cflags & CHUNK_REQUIRED)))
    if sum(c.type == ChunkType.META for c in chunks) > 1:
        raise UnknownValueError("more than one meta chunk")
    return Container(header, chunks, total)


def bits_per_pixel(container: Container) -> float:
    return 8.0 * container.total_size / (container.header.height * container.header.width)
