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

A payload is *canonical* when it is exactly what the encoder writes for the symbols it
decodes to. The decoder re-encodes what it decoded and refuses any other payload
(``CorruptStreamError``): so words appended, a stream cut short or padded, an empty
payload, or a stream made for other tables never decode silently. (The check costs one
encode, which runs about twice as fast as a decode.)
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

    def _groups(self, idx: np.ndarray):
        """``(table, positions)`` per table in use, ascending; positions ascending.

        One scan per table instead of one global sort: no temporary bigger than the
        largest group, so a 50 M-symbol latent stays within a few hundred MB."""
        flat = np.asarray(idx).ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= len(self._models)):
            raise ValueError("table index out of range")
        small = flat.astype(np.uint8 if len(self._models) <= 256 else np.uint16, copy=False)
        counts = np.bincount(small, minlength=len(self._models))
        for t in np.nonzero(counts)[0]:
            yield int(t), np.flatnonzero(small == t)

    # ---- one stream of several segments (a context model codes pass after pass) ----
    def _put(self, enc, symbols: np.ndarray, idx: np.ndarray) -> None:
        """One segment: groups in table order, then the segment's escapes."""
        symbols = np.asarray(symbols).ravel()
        if symbols.size != np.asarray(idx).size:
            raise ValueError("symbols and indices differ in size")
        escaped = []
        for t, pos in self._groups(idx):
            s = symbols[pos].astype(np.int64, copy=False)
            v = s - self._lo[t]
            out = (v < 0) | (v >= self._n[t])
            if out.any():
                escaped.append(s[out])
                v = np.where(out, self._n[t], v)
            enc.encode(v.astype(np.int32), self._models[t])
        if escaped:
            _encode_escapes(enc, np.concatenate(escaped))

    def _take(self, dec, idx: np.ndarray) -> np.ndarray:
        out = np.empty(np.asarray(idx).size, dtype=np.int64)
        esc_pos = []
        for t, pos in self._groups(idx):
            v = np.asarray(dec.decode(self._models[t], pos.size), dtype=np.int64)
            out[pos] = v + self._lo[t]
            esc = v == self._n[t]
            if esc.any():
                esc_pos.append(pos[esc])
        if esc_pos:
            # escapes follow in coding order: group by group, positions ascending
            pos = np.concatenate(esc_pos)
            out[pos] = _decode_escapes(dec, pos.size)
        return out

    def bits(self, symbols: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The information content of each symbol under its table, in bits (same shape
        as ``symbols``): where a stream spends its bits. An escaped symbol counts its
        escape entry plus 16 bits per 16-bit piece (the escape's length code is left out)."""
        symbols = np.asarray(symbols, dtype=np.int64)
        idx = np.asarray(idx)
        out = np.empty(symbols.size, dtype=np.float64)
        flat = symbols.ravel()
        for t, pos in self._groups(idx):
            counts = self.tables.counts[t, : self.tables.lengths[t]].astype(np.float64)
            v = flat[pos] - self._lo[t]
            esc = (v < 0) | (v >= self._n[t])
            v = np.where(esc, self._n[t], v)
            b = -np.log2(counts[v] / counts.sum())
            out[pos] = b + np.where(esc, 16.0 * np.ceil(_bit_length(_zigzag(flat[pos])) / 16), 0.0)
        return out.reshape(symbols.shape)

    def encoder(self) -> "StreamEncoder":
        return StreamEncoder(self)

    def decoder(self, data: bytes) -> "StreamDecoder":
        return StreamDecoder(self, data)

    def encode(self, symbols: np.ndarray, idx: np.ndarray) -> bytes:
        """A stream of one segment."""
        enc = self.encoder()
        enc.add(symbols, idx)
        return enc.finish()

    def decode(self, data: bytes, idx: np.ndarray) -> np.ndarray:
        """Symbols of a canonical one-segment payload (see the module docstring), in flat order."""
        dec = self.decoder(data)
        out = dec.take(idx)
        dec.finish()
        return out


class StreamEncoder:
    """Segments appended to one range-coded stream (``add`` per segment)."""

    def __init__(self, coder: TableCoder):
        self.coder = coder
        self.enc = constriction.stream.queue.RangeEncoder()

    def add(self, symbols: np.ndarray, idx: np.ndarray) -> None:
        self.coder._put(self.enc, symbols, idx)

    def finish(self) -> bytes:
        return self.enc.get_compressed().astype("<u4").tobytes()


class StreamDecoder:
    """Reads the segments of a stream back in order (``take`` per segment); ``finish``
    checks the stream is used up and canonical (re-encoding gives the same bytes)."""

    def __init__(self, coder: TableCoder, data: bytes):
        if len(data) % 4:
            raise CorruptStreamError("entropy-coded payload is not a whole number of 32-bit words")
        self.coder, self.data = coder, bytes(data)
        self.segments: list[tuple[np.ndarray, np.ndarray]] = []
        try:
            self.dec = constriction.stream.queue.RangeDecoder(np.frombuffer(self.data, dtype="<u4").astype(np.uint32))
        except (AssertionError, ValueError, RuntimeError, TypeError) as e:
            raise CorruptStreamError(f"entropy-coded payload does not decode ({e})") from None

    def take(self, idx: np.ndarray) -> np.ndarray:
        try:
            out = self.coder._take(self.dec, idx)
        # constriction reports an invalid stream with AssertionError (and others with
        # ValueError, ...): every one of them is a damaged payload, not a bug of ours
        except (AssertionError, ValueError, RuntimeError, OverflowError, TypeError, IndexError) as e:
            raise CorruptStreamError(f"entropy-coded payload does not decode ({e})") from None
        self.segments.append((out, np.asarray(idx)))
        return out

    def finish(self) -> None:
        if not self.dec.maybe_exhausted():
            raise CorruptStreamError("entropy-coded payload has data left after the last symbol")
        enc = self.coder.encoder()
        for symbols, idx in self.segments:
            enc.add(symbols, idx)
        if enc.finish() != self.data:
            raise CorruptStreamError("entropy-coded payload is not the encoding of the symbols it decodes to")


def _zigzag(values: np.ndarray) -> np.ndarray:
    """int64 -> uint64: 2v for v >= 0, -2v - 1 otherwise (every int64 maps)."""
    v = np.asarray(values, dtype=np.int64)
    return (v.view(np.uint64) << np.uint64(1)) ^ (v >> 63).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def _bit_length(u: np.ndarray) -> np.ndarray:
    n = np.zeros(u.shape, dtype=np.int64)
    x = u.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = x >= (np.uint64(1) << np.uint64(shift))
        n += big * shift
        x = np.where(big, x >> np.uint64(shift), x)
    return n + (x > 0)


def _encode_escapes(enc, values: np.ndarray) -> None:
    u = _zigzag(values)
    nbits = _bit_length(u)
    enc.encode(nbits.astype(np.int32), _ESC_LEN_MODEL)
    npieces = (nbits + 15) // 16
    if npieces.sum():
        # piece j of value i is bits 16j..16j+15, least significant first
        owner = np.repeat(np.arange(u.size), npieces)
        j = np.arange(owner.size) - np.repeat(np.cumsum(npieces) - npieces, npieces)
        pieces = (u[owner] >> (16 * j).astype(np.uint64)) & np.uint64(0xFFFF)
        enc.encode(pieces.astype(np.int32), _ESC_PIECE_MODEL)


def _decode_escapes(dec, count: int) -> np.ndarray:
    nbits = np.asarray(dec.decode(_ESC_LEN_MODEL, count), dtype=np.int64)
    npieces = (nbits + 15) // 16
    u = np.zeros(count, dtype=np.uint64)
    if npieces.sum():
        pieces = np.asarray(dec.decode(_ESC_PIECE_MODEL, int(npieces.sum())), dtype=np.uint64)
        owner = np.repeat(np.arange(count), npieces)
        j = np.arange(owner.size) - np.repeat(np.cumsum(npieces) - npieces, npieces)
        np.bitwise_or.at(u, owner, pieces << (16 * j).astype(np.uint64))
    return _unzigzag(u)
