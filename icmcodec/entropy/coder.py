"""The bridge to constriction: integer symbols + table indices in, ``<u4`` bytes out.

Coding order (``CoderId.RANGE_CATEGORICAL_V1``), which the decoder reproduces from the
table indices alone:

1. Symbols are grouped by table index, ascending; inside a group they keep their
   flat (C-order) position order. Each group is one vectorised ``encode`` call with
   that table's ``Categorical(perfect=False)`` model: no Python loop per symbol.
2. A value outside its table's range is coded as the table's escape entry, and the
   escaped values (in the same order) follow in the same stream: for each, the zigzag
   code ``u`` (``2v`` for ``v >= 0``, ``-2v - 1`` otherwise) is written as its bit length
   ``n`` (uniform over 0..64) and then ``n`` bits in 16-bit pieces, least significant
   first (uniform models). So any integer a 64-bit signed type holds codes and decodes
   exactly; escapes are rare by construction (tail mass 1e-9), so their cost is nil.
3. The stream is constriction's ``queue.RangeEncoder`` compressed words, written as
   little-endian uint32.
"""
from __future__ import annotations

import constriction
import numpy as np

from icmcodec.entropy.tables import IntTables

_ESC_LEN_MODEL = constriction.stream.model.Uniform(65)
_ESC_PIECE_MODEL = constriction.stream.model.Uniform(1 << 16)


class CorruptStreamError(ValueError):
    """The entropy-coded payload does not decode (damaged or wrong model)."""


class TableCoder:
    """Encode/decode integer symbols with a fixed :class:`IntTables` set."""

    def __init__(self, tables: IntTables):
        self.tables = tables
        self._models = [
            constriction.stream.model.Categorical(
                tables.counts[t, : tables.lengths[t]].astype(np.float64), perfect=False
            )
            for t in range(len(tables))
        ]
        self._lo = tables.offsets.astype(np.int64)
        self._n = (tables.lengths - 1).astype(np.int64)  # in-range entries; escape = n

    def _groups(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._models)):
            raise ValueError("table index out of range")
        # a stable sort of small unsigned keys is numpy's O(n) radix sort
        key = idx.astype(np.uint8 if len(self._models) <= 256 else np.uint16)
        order = np.argsort(key, kind="stable")
        counts = np.bincount(idx, minlength=len(self._models))
        starts = np.concatenate([[0], np.cumsum(counts)])
        return order, counts, starts

    def encode(self, symbols: np.ndarray, idx: np.ndarray) -> bytes:
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        order, counts, starts = self._groups(idx)
        if symbols.size != order.size:
            raise ValueError("symbols and indices differ in size")
        enc = constriction.stream.queue.RangeEncoder()
        s_sorted = symbols[order]
        escaped = []
        for t in np.nonzero(counts)[0]:
            v = s_sorted[starts[t] : starts[t + 1]] - self._lo[t]
            out = (v < 0) | (v >= self._n[t])
            if out.any():
                escaped.append(s_sorted[starts[t] : starts[t + 1]][out])
                v = np.where(out, self._n[t], v)
            enc.encode(v.astype(np.int32), self._models[t])
        if escaped:
            _encode_escapes(enc, np.concatenate(escaped))
        return enc.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, idx: np.ndarray) -> np.ndarray:
        if len(data) % 4:
            raise CorruptStreamError("entropy-coded payload is not a whole number of 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        order, counts, starts = self._groups(idx)
        out_sorted = np.empty(order.size, dtype=np.int64)
        try:
            dec = constriction.stream.queue.RangeDecoder(words)
            esc_pos = []
            for t in np.nonzero(counts)[0]:
                v = np.asarray(dec.decode(self._models[t], int(counts[t])), dtype=np.int64)
                seg = slice(starts[t], starts[t + 1])
                out_sorted[seg] = v + self._lo[t]
                esc = np.nonzero(v == self._n[t])[0]
                if esc.size:
                    esc_pos.append(esc + starts[t])
            if esc_pos:
                pos = np.concatenate(esc_pos)
                out_sorted[pos] = _decode_escapes(dec, pos.size)
            exhausted = dec.maybe_exhausted()
        except (ValueError, RuntimeError, OverflowError) as e:
            raise CorruptStreamError(f"entropy-coded payload does not decode ({e})") from None
        if not exhausted:
            raise CorruptStreamError("entropy-coded payload has data left after the last symbol")
        out = np.empty_like(out_sorted)
        out[order] = out_sorted
        return out


def _encode_escapes(enc, values: np.ndarray) -> None:
    u = [2 * v if v >= 0 else -2 * v - 1 for v in map(int, values)]
    nbits = np.array([x.bit_length() for x in u], dtype=np.int32)
    enc.encode(nbits, _ESC_LEN_MODEL)
    pieces = []
    for x, n in zip(u, nbits):
        for _ in range((int(n) + 15) // 16):
            pieces.append(x & 0xFFFF)
            x >>= 16
    if pieces:
        enc.encode(np.asarray(pieces, dtype=np.int32), _ESC_PIECE_MODEL)


def _decode_escapes(dec, count: int) -> np.ndarray:
    nbits = np.asarray(dec.decode(_ESC_LEN_MODEL, count), dtype=np.int64)
    n_pieces = int(((nbits + 15) // 16).sum())
    pieces = np.asarray(dec.decode(_ESC_PIECE_MODEL, n_pieces), dtype=np.int64) if n_pieces else []
    out, k = np.empty(count, dtype=np.int64), 0
    for i, n in enumerate(nbits):
        x = 0
        for j in range((int(n) + 15) // 16):
            x |= int(pieces[k]) << (16 * j)
            k += 1
        out[i] = x // 2 if x % 2 == 0 else -(x + 1) // 2
    return out
