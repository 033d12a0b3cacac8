"""Hostile inputs (issue 10): forged CRC-valid files, image bombs, colliding and
unwritable outputs, link loops. Every one ends in a clean rejection (one line, exit 2
for a single input, 1 for a batch) or a bounded, correct decode; never a traceback."""
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import bitstream
from cli.main import main
from icmcodec import pipeline
from icmcodec.bench.forge import join, mutations, set_field, split
from icmcodec.entropy import CorruptStreamError

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
sys.path.insert(0, str(GOLDEN.parent))
from make_golden import reference_picture  # noqa: E402

CLEAN = (bitstream.BitstreamError, CorruptStreamError, pipeline.UsageError)


@pytest.fixture(scope="module")
def codec():
    return pipeline.load_codec(str(GOLDEN / "tiny"), device="cpu")


@pytest.fixture(scope="module")
def files(codec):
    a = (GOLDEN / "tiny.icm").read_bytes()
    b = pipeline.encode_image(reference_picture(40, 130)[:, ::-1].copy(), quality=0.5, codec=codec)
    return a, b


def decodes_cleanly(data, codec):
    """True if decoded (to a picture of the header's size), False if cleanly refused."""
    try:
        res = pipeline.decode_bytes(data, codec=codec)
    except CLEAN:
        return False
    hd = bitstream.unpack(data).header
    assert res.rgb.shape == (hd.height, hd.width, 3) and res.rgb.dtype == np.uint8
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), skip=st.integers(0, 13))
def test_forged_files_are_rejected_cleanly_or_decode_bounded(codec, files, seed, skip):
    gen = mutations(*files, np.random.default_rng(seed))
    for _ in range(skip):
        next(gen)
    kind, data = next(gen)
    decodes_cleanly(data, codec)  # any other exception fails the test


# ---- one regression test per numbered case of the issue --------------------------
def test_1_damaged_entropy_payloads_are_corrupt_stream_errors(codec, files):
    fixed, chunks = split(files[0])
    for fill in (0x00, 0xFF):
        for i in range(len(chunks)):
            forged = join(fixed, [c if j != i else (c[0], c[1], bytes([fill]) * len(c[2])) for j, c in enumerate(chunks)])
            with pytest.raises(CLEAN):
                pipeline.decode_bytes(forged, codec=codec)
    swapped = join(fixed, [(chunks[1][0], 1, chunks[0][2]), (chunks[0][0], 1, chunks[1][2])])
    with pytest.raises(CLEAN):
        pipeline.decode_bytes(swapped, codec=codec)


@pytest.mark.parametrize("q", [1e308, -1e308, float("nan"), float("inf"), -float("inf"), 1 / 3, 3.0, -3.0])
def test_2_absurd_or_out_of_range_quality_is_refused(codec, files, q):
    # the tiny model's range is 0..2: 3 and -3 are on the grid but outside it
    with pytest.raises(bitstream.BitstreamError):
        pipeline.decode_bytes(set_field(files[0], "quality", q), codec=codec)


@pytest.mark.parametrize("ch,cw", [(120, 168), (64, 64), (192, 128), (4096, 4096)])
def test_3_4_coded_size_must_follow_from_the_picture_size(files, ch, cw):
    data = set_field(set_field(files[0], "coded_height", ch), "coded_width", cw)
    with pytest.raises(bitstream.LimitError):
        bitstream.unpack(data)


def test_4_a_1x1_picture_cannot_ask_for_a_large_coded_size(files):
    fixed, chunks = split(files[0])
    f = bytearray(fixed)
    struct.pack_into("<IIII", f, 36, 1, 1, 4096, 4096)
    with pytest.raises(bitstream.LimitError):
        bitstream.unpack(join(bytes(f), [(t, fl, b"") for t, fl, _ in chunks]))
    assert bitstream.coded_size(1, 1) == (64, 64) and bitstream.coded_size(65, 128) == (128, 128)


def test_5_meaningless_payloads_are_refused(codec, files):
    fixed, chunks = split(files[0])
    _, other = split(files[1])
    cases = {
        "empty": [(t, f, b"") for t, f, _ in chunks],
        "zero latent": [chunks[0], (chunks[1][0], chunks[1][1], bytes(len(chunks[1][2])))],
        "word appended": [chunks[0], (chunks[1][0], chunks[1][1], chunks[1][2] + b"\x01\x02\x03\x04")],
        "zero word appended": [chunks[0], (chunks[1][0], chunks[1][1], chunks[1][2] + bytes(4))],
        "last word cut": [chunks[0], (chunks[1][0], chunks[1][1], chunks[1][2][:-4])],
        "other hyper": [other[0], chunks[1]],
    }
    for name, cs in cases.items():
        with pytest.raises(CorruptStreamError):
            pipeline.decode_bytes(join(fixed, cs), codec=codec)


def test_the_coder_refuses_non_canonical_payloads():
    from icmcodec.entropy import TableCoder, gaussian_tables
    from icmcodec.exact import scale_table

    coder = TableCoder(gaussian_tables(scale_table()))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, 3000)
    sym = np.round(rng.normal(0, scale_table()[idx])).astype(np.int64)
    sym[:3] = [10**9, -(2**63), 2**63 - 1]  # escapes round-trip and stay canonical
    data = coder.encode(sym, idx)
    np.testing.assert_array_equal(coder.decode(data, idx), sym)
    for bad in (data + bytes(4), data[:-4], b"", bytes(len(data))):
        with pytest.raises(CorruptStreamError):
            coder.decode(bad, idx)


# ---- pictures ------------------------------------------------------------------------
def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture()
def env(tmp_path, monkeypatch):
    from icmcodec.zoo.tiny import write_tiny_model

    write_tiny_model(tmp_path / "models" / "tiny")
    monkeypatch.setenv("ICM_MODEL_PATH", str(tmp_path / "models"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def one_line_error(r, code=2):
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("icm: error:") or ln.startswith(("encode:", "decode:")) for ln in lines), r.output
    assert "internal error" not in r.output and "Traceback" not in r.output and "Warning" not in r.output


def test_6_image_bombs_and_side_limits(env):
    Image.new("1", (30000, 30000)).save(env / "bomb.png")  # 900 M pixels, a small file
    r = icm("encode", "bomb.png", "--model", "test-tiny-0")
    one_line_error(r)
    assert "over the limit of" in r.output and not (env / "bomb.icm").exists()
    Image.new("1", (10000, 10000)).save(env / "big.png")  # 100 M: over icm's 67 M
    one_line_error(icm("encode", "big.png", "--model", "test-tiny-0"))
    Image.new("1", (65537, 1)).save(env / "wide.png")
    r = icm("encode", "wide.png", "--model", "test-tiny-0")
    one_line_error(r)
    assert "a side" in r.output


def picture(path, size=(40, 30)):
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_7_two_inputs_mapping_to_one_output_never_lose_one(env):
    (env / "d").mkdir()
    (env / "x").mkdir()
    (env / "y").mkdir()
    picture(env / "d" / "a.png")
    picture(env / "d" / "a.jpg", (20, 20))
    r = icm("encode", "d/a.png", "d/a.jpg", "--model", "test-tiny-0")
    assert r.exit_code == 1 and "1 ok, 1 failed" in r.output and "already written" in r.output
    assert bitstream.unpack((env / "d" / "a.icm").read_bytes()).header.width == 40  # the first one, intact
    picture(env / "x" / "p.png")
    picture(env / "y" / "p.png", (24, 24))
    r = icm("encode", "x/p.png", "y/p.png", "--out-dir", "o", "--model", "test-tiny-0")
    assert r.exit_code == 1 and "already written" in r.output
    assert sorted(os.listdir(env / "o")) == ["p.icm"]


def test_8_every_output_path_is_checked_before_any_is_written(env):
    picture(env / "a.png")
    assert icm("encode", "a.png", "--model", "test-tiny-0", "--task", "recon", "-o", "x.icm").exit_code == 0
    (env / "seg.json").write_bytes((env / "x.icm").read_bytes())
    r = icm("decode", "seg.json", "-o", "seg.png")
    assert r.exit_code == 0  # recon writes one file, seg.png: the input is not touched
    (env / "seg.png").unlink()
    # a recon file decoded onto its own name
    r = icm("decode", "x.icm", "-o", "x.icm")
    one_line_error(r)
    assert "overwrite the input" in r.output and bitstream.unpack((env / "x.icm").read_bytes())


def test_8_side_file_onto_the_input_writes_nothing(env, tasknet_dir, monkeypatch):
    folder = tasknet_dir("semseg")
    monkeypatch.setenv("ICM_MODEL_PATH", f"{env.parent / 'models'}{os.pathsep}{folder.parent}")
    picture(env / "a.png", (64, 48))
    assert icm("encode", "a.png", "--model", "test-tiny-0", "--task", "semseg", "--task-model", "tiny-semseg",
               "-o", "seg.json").exit_code == 0
    r = icm("decode", "seg.json", "-o", "seg.png")  # side file seg.json is the input
    one_line_error(r)
    assert not (env / "seg.png").exists() and bitstream.unpack((env / "seg.json").read_bytes())


def test_9_unwritable_outputs_are_usage_errors(env):
    picture(env / "a.png")
    (env / "ro").mkdir()
    os.chmod(env / "ro", 0o500)
    try:
        if os.access(env / "ro", os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        one_line_error(icm("encode", "a.png", "--model", "test-tiny-0", "-o", "ro/a.icm"))
    finally:
        os.chmod(env / "ro", 0o700)
    (env / "folder").mkdir()
    one_line_error(icm("encode", "a.png", "--model", "test-tiny-0", "-o", "folder"))
    (env / "afile").write_text("x")
    one_line_error(icm("encode", "a.png", "--model", "test-tiny-0", "-o", "afile/a.icm"))
    assert icm("encode", "a.png", "--model", "test-tiny-0", "-o", "new/deeper/a.icm").exit_code == 0


def test_9_read_only_folder_even_as_root(env, monkeypatch):
    """root writes anywhere: simulate the OS refusing, the message must stay plain."""
    import icmcodec.imageio as io_mod

    picture(env / "a.png")

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(io_mod, "atomic_write", refuse)
    r = icm("encode", "a.png", "--model", "test-tiny-0", "-o", "a.icm")
    one_line_error(r)
    assert "cannot write a.icm (Permission denied)" in r.output


def test_10_link_loops_and_dangling_links_are_reported(env):
    (env / "in" / "sub").mkdir(parents=True)
    picture(env / "in" / "x.png")
    os.symlink("..", env / "in" / "sub" / "up")  # a loop through a folder link
    os.symlink("self.png", env / "in" / "self.png")  # a link to itself
    os.symlink("gone.png", env / "in" / "dangling.png")
    r = icm("encode", "in", "--out-dir", "out", "--model", "test-tiny-0")
    assert r.exit_code == 1, r.output
    assert "1 ok, 3 failed" in r.output and "symlink loop" in r.output and "cannot follow the link" in r.output
    assert (env / "out" / "x.icm").exists()
