"""Integer probability tables: the only thing the range coder's models are built from.

A table set (:class:`IntTables`) is ``T`` tables of non-negative integer counts. Table
``t`` covers the symbol values ``offset[t] .. offset[t] + length[t] - 2``; its last
entry (index ``length[t] - 1``) is the *escape* symbol, used for any value outside
that range (the value itself then goes to the escape stream, see
:mod:`icmcodec.entropy.coder`). Tables are computed once, in float64, when a model is
exported, and stored as integers in the model file: coding never evaluates a float
distribution, so encoder and decoder agree on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

# Counts of a table sum to this (the range coder's model precision is 24 bits).
TABLE_TOTAL = 1 << 24
# Smallest count any entry gets, the escape entry included.
MIN_COUNT = 1


@dataclass
class IntTables:
    counts: np.ndarray  # (T, Lmax) int32, zero past length
    offsets: np.ndarray  # (T,) int32, value of entry 0
    lengths: np.ndarray  # (T,) int32, entries incl. escape

    def __post_init__(self):
        self.counts = np.ascontiguousarray(self.counts, dtype=np.int32)
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int32)
        self.lengths = np.ascontiguousarray(self.lengths, dtype=np.int32)
        t, lmax = self.counts.shape
        if self.offsets.shape != (t,) or self.lengths.shape != (t,):
            raise ValueError("table shapes disagree")
        if (self.lengths < 2).any() or (self.lengths > lmax).any():
            raise ValueError("table lengths out of range")

    def __len__(self) -> int:
        return self.counts.shape[0]


def _scaled(pmf: np.ndarray, escape_mass: float) -> tuple[np.ndarray, int]:
    p = np.concatenate([np.clip(pmf, 0, None), [max(escape_mass, 0.0)]]).astype(np.float64)
    free = TABLE_TOTAL - MIN_COUNT * p.size
    if free <= 0:
        raise ValueError("table too long for the count precision")
    return p / p.sum() * free, free


def counts_from_pmf(pmf: np.ndarray, escape_mass: float) -> np.ndarray:
    """Float pmf over the in-range values plus escape mass -> integer counts.

    Every entry gets at least ``MIN_COUNT``; the total is exactly ``TABLE_TOTAL``.
    """
    v, _ = _scaled(pmf, escape_mass)
    c = np.floor(v).astype(np.int64) + MIN_COUNT
    # hand the rounding remainder to the most probable entries
    rem = TABLE_TOTAL - int(c.sum())
    order = np.argsort(-v, kind="stable")
    c[order[: rem]] += 1
    assert c.sum() == TABLE_TOTAL and rem >= 0
    return c.astype(np.int32)


def count_margin(pmf: np.ndarray, escape_mass: float) -> float:
    """How far, in counts, the float inputs of :func:`counts_from_pmf` are from a value
    where its integer result would change: the distance of every scaled entry from the
    next integer (the floor) and the gap between the last entry that gets a remainder
    count and the first that does not. A float error smaller than this cannot change
    the table, so a table with a margin far above float64 noise is the same on every CPU.
    """
    v, _ = _scaled(pmf, escape_mass)
    frac = v - np.floor(v)
    margin = float(np.minimum(frac, 1 - frac).min())
    rem = TABLE_TOTAL - int((np.floor(v) + MIN_COUNT).sum())
    s = np.sort(v)[::-1]
    if 0 < rem < s.size:
        margin = min(margin, float(s[rem - 1] - s[rem]))
    return margin


def stack_tables(rows: list[np.ndarray], offsets: list[int]) -> IntTables:
    lmax = max(len(r) for r in rows)
    counts = np.zeros((len(rows), lmax), dtype=np.int32)
    for i, r in enumerate(rows):
        counts[i, : len(r)] = r
    return IntTables(counts, np.asarray(offsets), np.asarray([len(r) for r in rows]))


def gaussian_pmf(r: int, s: float) -> np.ndarray:
    """P(round(N(0, s)) = v) for v in -r..r, from the lower tail on both sides.

    Why: the two halves of a zero-mean table are equal in exact arithmetic. Computed as
    ``ndtr(v + 0.5) - ndtr(v - 0.5)`` for positive v they lose precision (1 - small) and
    differ from their mirror by float noise, which varies with the CPU; where the
    remainder counts of :func:`counts_from_pmf` fall inside such a pair, that noise picked
    which side got the count (a fresh export differed by one count between machines).
    From ``-|v|`` the halves are bit-identical, so the stable sort decides, on every CPU.
    """
    a = -np.abs(np.arange(-r, r + 1, dtype=np.float64))
    return ndtr((a + 0.5) / s) - ndtr((a - 0.5) / s)


def gaussian_tables(scales: np.ndarray, tail: float = 1e-9, max_half: int = 4096) -> IntTables:
    """Zero-mean discretized Gaussians, one table per scale.

    Table ``k`` covers ``-R..R`` with ``R`` the smallest integer whose two-sided tail
    mass is below ``tail`` (capped at ``max_half``); that tail becomes the escape mass.
    """
    rows, offsets = [], []
    for s in np.asarray(scales, dtype=np.float64):
        r = int(np.clip(np.ceil(s * 6.1 + 0.5), 1, max_half))
        pmf = gaussian_pmf(r, s)
        esc = max(2 * ndtr(-(r + 0.5) / s), tail)
        rows.append(counts_from_pmf(pmf, esc))
        offsets.append(-r)
    return stack_tables(rows, offsets)
