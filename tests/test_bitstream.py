"""The container: round trips, frozen enums, and every kind of damage rejected."""
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bitstream as bs


def make(chunks=None, **kw) -> bytes:
    fields = dict(method=bs.MethodId.HYPERPRIOR, task=bs.TaskTag.RECON, coder=bs.CoderId.RANGE_CATEGORICAL_V1,
                  quality=2.5, height=30, width=40, coded_height=64, coded_width=64,
                  model_hash=bytes(range(16)), adapter_hash=bytes(16))
    fields.update(kw)
    if chunks is None:
        chunks = [bs.Chunk(bs.ChunkType.HYPER, b"\x01\x02\x03\x04"), bs.Chunk(bs.ChunkType.LATENT, b"abcdefgh")]
    return bs.pack(bs.Header(**fields), chunks)


def reseal(body: bytes) -> bytes:
    """Recompute the CRC after a deliberate edit, to reach the checks behind it."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def test_round_trip_and_fields():
    data = make()
    c = bs.unpack(data)
    assert c.header.method == bs.MethodId.HYPERPRIOR and c.header.task == bs.TaskTag.RECON
    assert (c.header.height, c.header.width, c.header.coded_height) == (30, 40, 64)
    assert c.header.quality == 2.5 and c.header.model_hash == bytes(range(16))
    assert c.get(bs.ChunkType.LATENT) == [b"abcdefgh"]
    assert c.total_size == len(data) == bs.FIXED_SIZE + 2 * 8 + 12 + 4
    assert data[0] >= 0x80 and data[:8] == bs.MAGIC
    assert bs.bits_per_pixel(c) == 8 * len(data) / 1200


def test_quality_is_canonical():
    assert bs.unpack(make(quality=1.0 / 3)).header.quality == round(256 / 3) / 256


def test_enums_are_frozen():
    assert {t.name: int(t) for t in bs.TaskTag} == {
        "RECON": 0, "SEMSEG": 1, "DEPTH": 2, "BOUNDARY": 3, "SALIENCY": 4, "CLS": 5, "NORMAL": 6}
    assert {m.name: int(m) for m in bs.MethodId} == {
        "HYPERPRIOR": 1, "TRANSTIC": 2, "PROMPT_ICM": 3, "DORA_ICM": 4, "MPA": 5, "CONTEXT": 6, "PRIVATE": 240}
    assert int(bs.CoderId.RANGE_CATEGORICAL_V1) == 1
    assert {c.name: int(c) for c in bs.ChunkType} == {"HYPER": 1, "LATENT": 2, "SIDE": 3, "META": 4}


def test_bad_magic():
    data = make()
    with pytest.raises(bs.BadMagicError):
        bs.unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(bs.BadMagicError):
        bs.unpack(b"")
    with pytest.raises(bs.BadMagicError):
        bs.unpack(b"hello world, not a codec file at all" * 3)


def test_wrong_major_version():
    data = bytearray(make())
    data[8] = 2
    with pytest.raises(bs.UnsupportedVersionError):
        bs.unpack(reseal(bytes(data)))


def test_every_truncation_is_rejected():
    data = make()
    for n in range(len(data)):
        with pytest.raises((bs.TruncatedError, bs.BadMagicError)):
            bs.unpack(data[:n])
    with pytest.raises(bs.TruncatedError):
        bs.unpack(data[:-1])
    with pytest.raises(bs.TruncatedError):
        bs.unpack(data[:5])


def test_trailing_data_rejected():
    with pytest.raises(bs.TrailingDataError):
        bs.unpack(make() + b"\0")


def test_every_single_bit_flip_is_detected():
    data = make()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(bs.BitstreamError):
            bs.unpack(bytes(flipped))


def test_absurd_sizes_rejected_before_allocation():
    data = bytearray(make())
    struct.pack_into("<II", data, 36, 1 << 30, 1 << 30)  # height, width
    with pytest.raises(bs.LimitError):
        bs.unpack(reseal(bytes(data)))
    data = bytearray(make())
    struct.pack_into("<Q", data, 12, 1 << 40)  # total size
    with pytest.raises(bs.LimitError):
        bs.unpack(reseal(bytes(data)))
    data = bytearray(make())
    struct.pack_into("<H", data, 84, 60000)  # chunk count
    with pytest.raises(bs.LimitError):
        bs.unpack(reseal(bytes(data)))
    with pytest.raises(bs.LimitError):
        make(height=8193, width=8193, coded_height=8256, coded_width=8256)


def test_chunk_lengths_past_the_end():
    data = bytearray(make())
    struct.pack_into("<I", data, bs.FIXED_SIZE + 4, 1000)  # first chunk length
    with pytest.raises(bs.LengthError):
        bs.unpack(reseal(bytes(data)))


def test_unknown_optional_chunk_is_skipped_required_is_refused():
    extra = [bs.Chunk(bs.ChunkType.HYPER, b"zz"), bs.Chunk(99, b"future", required=False)]
    data = bytearray(make(chunks=extra))
    data[9] = bs.MINOR + 1  # a newer minor version
    c = bs.unpack(reseal(bytes(data)))
    assert [ch.type for ch in c.chunks] == [bs.ChunkType.HYPER] and c.header.minor == bs.MINOR + 1
    with pytest.raises(bs.UnsupportedFeatureError):
        bs.unpack(make(chunks=[bs.Chunk(99, b"future", required=True)]))


def test_unknown_enum_values():
    data = bytearray(make())
    struct.pack_into("<H", data, 22, 77)  # task
    with pytest.raises(bs.UnknownValueError):
        bs.unpack(reseal(bytes(data)))


def test_read_header_needs_only_the_fixed_part():
    data = make()
    h, header_size, total, n = bs.read_header(data[: bs.FIXED_SIZE])
    assert (h.width, total, n) == (40, len(data), 2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_bitstream_errors(blob):
    with pytest.raises(bs.BitstreamError):
        bs.unpack(blob)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_random_byte_edits_are_detected(pos, value):
    data = bytearray(make())
    pos %= len(data)
    if data[pos] == value:
        return
    data[pos] = value
    with pytest.raises(bs.BitstreamError):
        bs.unpack(bytes(data))
