"""Forging hostile ``.icm`` files that pass the CRC: what an attacker, not line noise, sends.

Anyone can recompute a CRC-32, so every forgery here is resealed (``reseal``) and, when
it changes lengths, gets a consistent ``total_size`` and chunk table: it reaches the
decoder's deeper checks. Used by the fuzz tests and by ``benchmarks/hostile.py``.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

import bitstream as bs

# field name -> (offset, struct format), from the spec in bitstream/__init__.py
FIELDS = {
    "major": (8, "<B"), "minor": (9, "<B"), "header_size": (10, "<H"), "total_size": (12, "<Q"),
    "method": (20, "<H"), "task": (22, "<H"), "coder": (24, "<H"), "flags": (26, "<H"),
    "quality": (28, "<d"), "height": (36, "<I"), "width": (40, "<I"), "coded_height": (44, "<I"),
    "coded_width": (48, "<I"), "model_hash": (52, "16s"), "adapter_hash": (68, "16s"),
    "chunk_count": (84, "<H"), "reserved": (86, "<H"),
}


def reseal(data: bytes | bytearray) -> bytes:
    """Recompute the trailing CRC-32."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def set_field(data: bytes, name: str, value) -> bytes:
    off, fmt = FIELDS[name]
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return reseal(b)


def split(data: bytes) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """(fixed header, [(type, flags, payload)]) of a well-formed file."""
    (n,) = struct.unpack_from("<H", data, 84)
    entries, pos = [], bs.FIXED_SIZE + 8 * n
    for i in range(n):
        t, f, ln = struct.unpack_from("<HHI", data, bs.FIXED_SIZE + 8 * i)
        entries.append((t, f, data[pos:pos + ln]))
        pos += ln
    return data[:bs.FIXED_SIZE], entries


def join(fixed: bytes, chunks: list[tuple[int, int, bytes]]) -> bytes:
    """Reassemble with a consistent chunk count, header size and total size."""
    b = bytearray(fixed)
    hsize = bs.FIXED_SIZE + 8 * len(chunks)
    struct.pack_into("<H", b, 84, len(chunks))
    struct.pack_into("<H", b, 10, hsize)
    struct.pack_into("<Q", b, 12, hsize + sum(len(c[2]) for c in chunks) + 4)
    table = b"".join(struct.pack("<HHI", t, f, len(p)) for t, f, p in chunks)
    return reseal(bytes(b) + table + b"".join(p for _, _, p in chunks) + b"\0\0\0\0")


def mutations(data: bytes, other: bytes, rng: np.random.Generator):
    """Yield ``(kind, forged bytes)`` without end: random header and payload forgeries.

    ``other`` is a second valid file (another picture, maybe another size), whose
    chunks get spliced in."""
    fixed, chunks = split(data)
    _, other_chunks = split(other)
    special_q = [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 5e-324, 1 / 3, 1000.0, -1000.0]
    while True:
        k = int(rng.integers(14))
        if k == 0:
            name = str(rng.choice(list(FIELDS)))
            off, fmt = FIELDS[name]
            size = struct.calcsize(fmt)
            v = bytes(rng.integers(0, 256, size, dtype=np.uint8))
            b = bytearray(data)
            b[off:off + size] = v
            yield f"field:{name}", reseal(b)
        elif k == 1:
            yield "quality", set_field(data, "quality", float(rng.choice(special_q)))
        elif k == 2:
            name = str(rng.choice(["height", "width", "coded_height", "coded_width"]))
            v = int(rng.choice([0, 1, 63, 64, 65, 4096, 65536, 65537, 2**31, 2**32 - 1, int(rng.integers(1, 5000))]))
            yield f"size:{name}", set_field(data, name, v)
        elif k == 3:  # a tiny picture that claims a huge coded size, payloads emptied
            f = set_field(set_field(fixed + b"\0" * 4, "height", 1), "width", 1)[:bs.FIXED_SIZE]
            side = int(rng.choice([64, 1024, 4096, 65536]))
            f = bytearray(f)
            struct.pack_into("<II", f, 44, side, side)
            yield "huge-coded", join(bytes(f), [(t, fl, b"") for t, fl, _ in chunks])
        elif k == 4:  # one payload byte changed
            i = int(rng.integers(len(chunks)))
            p = bytearray(chunks[i][2])
            if p:
                p[int(rng.integers(len(p)))] ^= int(rng.integers(1, 256))
            yield "payload:flip", join(fixed, [c if j != i else (c[0], c[1], bytes(p)) for j, c in enumerate(chunks)])
        elif k == 5:
            i = int(rng.integers(len(chunks)))
            fill = bytes([int(rng.choice([0, 0xFF]))]) * len(chunks[i][2])
            yield "payload:fill", join(fixed, [c if j != i else (c[0], c[1], fill) for j, c in enumerate(chunks)])
        elif k == 6:
            i = int(rng.integers(len(chunks)))
            p = chunks[i][2]
            cut = p[: int(rng.integers(0, len(p) + 1))]
            yield "payload:cut", join(fixed, [c if j != i else (c[0], c[1], cut) for j, c in enumerate(chunks)])
        elif k == 7:
            i = int(rng.integers(len(chunks)))
            extra = bytes(rng.integers(0, 256, int(rng.choice([1, 4, 8, 64])), dtype=np.uint8))
            yield "payload:append", join(fixed, [c if j != i else (c[0], c[1], c[2] + extra)
                                                 for j, c in enumerate(chunks)])
        elif k == 8:
            yield "payload:empty", join(fixed, [(t, f, b"") for t, f, _ in chunks])
        elif k == 9:
            yield "chunks:swap", join(fixed, [(chunks[-1 - j][0], c[1], c[2]) for j, c in enumerate(chunks)])
        elif k == 10:
            i = int(rng.integers(min(len(chunks), len(other_chunks))))
            yield "chunks:other", join(fixed, [c if j != i else other_chunks[i] for j, c in enumerate(chunks)])
        elif k == 11:
            t = int(rng.choice([0, 3, 4, 5, 999]))
            yield "chunks:extra", join(fixed, chunks + [(t, int(rng.integers(2)), bytes(rng.integers(0, 256, 9,
                                                                                              dtype=np.uint8)))])
        elif k == 12:
            yield "chunks:drop", join(fixed, chunks[: int(rng.integers(len(chunks)))])
        else:  # random words in every payload, lengths kept
            yield "payload:random", join(fixed, [(t, f, bytes(rng.integers(0, 256, len(p), dtype=np.uint8)))
                                                 for t, f, p in chunks])
