"""Integer tables and the range coder: exact round trips, escapes, efficiency."""
import numpy as np
import pytest
from scipy.special import ndtr

from icmcodec.entropy import CorruptStreamError, IntTables, TableCoder, counts_from_pmf, gaussian_tables
from icmcodec.entropy.tables import TABLE_TOTAL
from icmcodec.exact import scale_table


@pytest.fixture(scope="module")
def coder():
    return TableCoder(gaussian_tables(scale_table()))


def test_counts_sum_and_floor():
    c = counts_from_pmf(np.array([0.5, 0.5 - 1e-12, 0.0, 1e-30]), 0.0)
    assert c.sum() == TABLE_TOTAL and c.min() >= 1 and c.size == 5


def test_gaussian_tables_cover_six_sigma():
    t = gaussian_tables(scale_table())
    assert len(t) == 64
    for k, s in enumerate(scale_table()):
        assert -t.offsets[k] >= 6 * s and t.counts[k, : t.lengths[k]].sum() == TABLE_TOTAL


def test_round_trip_with_escapes(coder):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, 5000)
    sym = np.round(rng.normal(0, scale_table()[idx])).astype(np.int64)
    sym[:6] = [10**6, -(10**9), 2**62, -(2**63), 2**63 - 1, 0]  # far outside every table
    data = coder.encode(sym, idx)
    assert len(data) % 4 == 0
    np.testing.assert_array_equal(coder.decode(data, idx), sym)


def test_rate_is_close_to_the_model_entropy(coder):
    rng = np.random.default_rng(1)
    idx = rng.integers(10, 50, 50000)
    s = scale_table()[idx]
    sym = np.round(rng.normal(0, s)).astype(np.int64)
    bits = 8 * len(coder.encode(sym, idx))
    ideal = -np.log2(ndtr((sym + 0.5) / s) - ndtr((sym - 0.5) / s)).sum()
    assert ideal <= bits <= ideal * 1.005 + 64


def test_empty_and_single(coder):
    assert coder.decode(coder.encode(np.zeros(0, np.int64), np.zeros(0, np.int64)), np.zeros(0, np.int64)).size == 0
    np.testing.assert_array_equal(coder.decode(coder.encode([3], [20]), [20]), [3])


def test_bad_payloads(coder):
    with pytest.raises(CorruptStreamError):
        coder.decode(b"abc", np.zeros(3, np.int64))
    with pytest.raises(ValueError):
        coder.encode([1, 2], [0, 64])  # no such table


def test_order_is_by_table_then_position():
    """Two tables; swapping the indices changes the models, so the bytes differ."""
    t = IntTables(np.array([[1, 100, 1, 0], [100, 1, 1, 1]]), np.array([0, 0]), np.array([3, 4]))
    c = TableCoder(t)
    sym, idx = np.array([1, 0, 1, 0]), np.array([0, 1, 0, 1])
    assert c.decode(c.encode(sym, idx), idx).tolist() == sym.tolist()
    assert c.encode(sym, idx) != c.encode(sym, 1 - idx)


def test_payload_with_extra_words_is_refused(coder):
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 64, 300)
    sym = np.round(rng.normal(0, scale_table()[idx])).astype(np.int64)
    data = coder.encode(sym, idx)
    with pytest.raises(CorruptStreamError):
        coder.decode(data + b"\x12\x34\x56\x78" * 3, idx)


def test_gaussian_pmf_halves_are_bit_identical_so_remainder_ties_break_by_index():
    """The two halves of a zero-mean table must be equal to the bit: float noise between
    them would let the CPU decide which mirror entry gets a remainder count."""
    from icmcodec.entropy.tables import gaussian_pmf

    for s in (0.11, 0.7, 3.3, 17.9, 250.0):
        r = int(np.ceil(s * 6.1 + 0.5))
        pmf = gaussian_pmf(r, s)
        assert np.array_equal(pmf, pmf[::-1]) and abs(pmf.sum() - 1) < 1e-6
    t = gaussian_tables(scale_table())
    for k in range(t.counts.shape[0]):
        row = t.counts[k, : t.lengths[k] - 1].astype(int)  # the last entry is the escape
        # mirror entries differ by at most the one remainder count, given to the lower index
        assert np.all(np.abs(row - row[::-1]) <= 1)
        half = row.size // 2
        assert np.all(row[:half] >= row[::-1][:half])
