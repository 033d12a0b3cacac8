"""Hostile inputs (issue 10): forged CRC-valid files, image bombs, colliding and
unwritable outputs, link loops. Every one ends in a clean rejection (one line, exit 2
for a single input, 1 for a batch) or a bounded, correct decode; never a traceback."""
import os
import struct
import subprocess
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
from icmcodec.registry import METHODS
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
    from icmcodec.methods.hyperprior.tiny import write_tiny_model

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


# ---- files that break their own spec (issue 24, item 5): rules 8-11 of bitstream ----
sys.path.insert(0, str(Path(__file__).parent))
from conftest import slow_icm, write_tiny_tasknet  # noqa: E402

# (method, task) of the files below: every method, recon where it codes a picture and a
# machine task through its task network or adapter
SPEC_FILES = [("hyperprior", "recon"), ("hyperprior", "semseg"), ("context", "recon"), ("context", "semseg"),
              ("transtic", "recon"), ("transtic", "semseg"), ("prompt-icm", "semseg"), ("dora-icm", "semseg"),
              ("mpa", "recon"), ("mpa", "semseg")]


@pytest.fixture(scope="module")
def spec_models(tmp_path_factory):
    """Tiny models of every method, a tiny semseg network and a prompt set per adapter
    method: the model folder (for ICM_MODEL_PATH) and one valid file per SPEC_FILES entry."""
    from icmcodec.methods.context.tiny import write_tiny_context_model
    from icmcodec.methods.dora_icm.tiny import write_tiny_dora_model
    from icmcodec.methods.mpa.tiny import write_tiny_mpa_adapter, write_tiny_mpa_model
    from icmcodec.methods.prompt_icm.tiny import write_tiny_prompt_icm_model, write_tiny_prompt_icm_adapter
    from icmcodec.methods.transtic.tiny import write_tiny_transtic_adapter, write_tiny_transtic_model

    models = tmp_path_factory.mktemp("spec") / "models"
    net = models / "tiny-semseg"
    write_tiny_tasknet(net, "semseg", name="tiny-semseg")
    names = {"hyperprior": str(GOLDEN / "tiny"), "context": "spec-context", "transtic": "spec-transtic",
             "prompt-icm": "spec-picm", "dora-icm": "spec-dora", "mpa": "spec-mpa"}
    write_tiny_context_model(models / "spec-context")
    write_tiny_dora_model(models / "spec-dora")
    write_tiny_mpa_model(models / "spec-mpa")
    write_tiny_mpa_adapter(models / "spec-mpa-semseg", models / "spec-mpa", net, "semseg")
    write_tiny_transtic_model(models / "spec-transtic")
    write_tiny_prompt_icm_model(models / "spec-picm")
    write_tiny_transtic_adapter(models / "spec-transtic-semseg", models / "spec-transtic", net, "semseg")
    write_tiny_prompt_icm_adapter(models / "spec-picm-semseg", models / "spec-picm", net, "semseg")
    old = os.environ.get("ICM_MODEL_PATH")
    os.environ["ICM_MODEL_PATH"] = f"{models}{os.pathsep}{GOLDEN}"
    try:
        rgb = reference_picture(40, 72)
        out = {}
        for method, task in SPEC_FILES:
            codec = pipeline.load_codec(names[method] if method == "hyperprior" else str(models / names[method]),
                                        device="cpu")
            picture = codec.produces == "picture" or METHODS[method].adapter
            tasknet = pipeline.load_tasknet(task, "tiny-semseg", device="cpu") if task != "recon" and picture else None
            out[method, task] = pipeline.encode_image(rgb, task=task, quality=1.0, codec=codec, tasknet=tasknet)
    finally:
        if old is None:
            del os.environ["ICM_MODEL_PATH"]
        else:
            os.environ["ICM_MODEL_PATH"] = old
    return models, out


@pytest.fixture()
def spec_files(spec_models, monkeypatch):
    models, out = spec_models
    monkeypatch.setenv("ICM_MODEL_PATH", f"{models}{os.pathsep}{GOLDEN}")
    return out


def with_chunks(data, edit):
    fixed, chunks = split(data)
    return join(fixed, edit(chunks))


@pytest.mark.parametrize("key", SPEC_FILES, ids=lambda k: "-".join(k) if isinstance(k, tuple) else k)
def test_spec_a_valid_file_of_every_method_decodes(spec_files, key):
    data = spec_files[key]
    hd = bitstream.unpack(data).header
    assert (hd.adapter_hash == bytes(16)) == (key[1] == "recon")
    layout = pipeline.codec_for(hd, "cpu").chunk_layout
    assert [(t, f) for t, f, _ in split(data)[1]] == [(t, 1) for t in layout]
    res = pipeline.decode_bytes(data)
    assert res.task == key[1] and (res.rgb is not None or res.output is not None)
    # an informative META chunk (optional, UTF-8 JSON) changes nothing
    meta = with_chunks(data, lambda cs: cs + [(bitstream.ChunkType.META, 0, b'{"note": "informative"}')])
    assert bitstream.unpack(meta).get(bitstream.ChunkType.META) == [b'{"note": "informative"}']
    pipeline.decode_bytes(meta)


@pytest.mark.parametrize("name", ["tiny", "hp-base", "hp-small", "tic-hybrid"])
def test_spec_every_golden_file_passes_the_new_rules(name):
    data = (GOLDEN / f"{name}.icm").read_bytes()
    c = bitstream.unpack(data)
    codec = pipeline.load_codec(str(GOLDEN / "tiny") if name == "tiny" else name, device="cpu")
    assert len(codec.payloads(c.chunks)) == 2 and c.header.adapter_hash == bytes(16)


@pytest.mark.parametrize("key", [k for k in SPEC_FILES if k[1] == "recon"], ids="-".join)
def test_spec_a_recon_file_with_an_adapter_hash_is_refused(spec_files, key):
    forged = set_field(spec_files[key], "adapter_hash", bytes(range(1, 17)))
    with pytest.raises(bitstream.UnknownValueError, match="recon file must have 16 zero bytes"):
        pipeline.decode_bytes(forged)
    with pytest.raises(bitstream.UnknownValueError):
        bitstream.read_header(forged)  # a header check: icm info refuses it too


@pytest.mark.parametrize("key", [k for k in SPEC_FILES if k[1] != "recon"], ids="-".join)
def test_spec_a_machine_task_file_without_an_adapter_hash_is_refused(spec_files, key):
    with pytest.raises(bitstream.UnknownValueError, match="must name its task network or adapter"):
        pipeline.decode_bytes(set_field(spec_files[key], "adapter_hash", bytes(16)))
    # a recon file relabelled as a machine task: the same rule
    if (key[0], "recon") in spec_files:
        with pytest.raises(bitstream.UnknownValueError):
            pipeline.decode_bytes(set_field(spec_files[key[0], "recon"], "task", int(bitstream.TaskTag.SEMSEG)))


@pytest.mark.parametrize("key", SPEC_FILES, ids="-".join)
def test_spec_a_chunk_the_method_does_not_use_is_refused(spec_files, key):
    data = spec_files[key]
    side = bitstream.ChunkType.SIDE
    for at in (0, 1, 2):  # before, between and after the method's chunks
        forged = with_chunks(data, lambda cs: cs[:at] + [(side, 1, b"side information")] + cs[at:])
        assert bitstream.unpack(forged)  # a valid container: the method refuses it
        with pytest.raises(bitstream.UnsupportedFeatureError, match="does not use side chunks"):
            pipeline.decode_bytes(forged)
    with pytest.raises(bitstream.UnknownValueError, match="must be required"):  # an optional SIDE chunk
        pipeline.decode_bytes(with_chunks(data, lambda cs: cs + [(side, 0, b"side information")]))
    # repeated, missing or swapped method chunks: not the method's layout
    for edit in (lambda cs: cs + [cs[1]], lambda cs: [cs[0], cs[0], cs[1]], lambda cs: cs[:1],
                 lambda cs: [cs[1], cs[0]]):
        with pytest.raises(bitstream.LengthError, match="writes the chunks hyper, latent"):
            pipeline.decode_bytes(with_chunks(data, edit))
    # decode_chunks checks the same, for callers that skip decode_bytes
    codec = pipeline.codec_for(bitstream.unpack(data).header, "cpu")
    c = bitstream.unpack(with_chunks(data, lambda cs: cs + [(side, 1, b"x")]))
    with pytest.raises(bitstream.UnsupportedFeatureError):
        codec.decode_chunks(c.header, c.chunks)


@pytest.mark.parametrize("flags", [0x0003, 0x0002, 0x8001, 0xFFFF])
def test_spec_undefined_chunk_flag_bits_are_refused(spec_files, flags):
    for key in (("hyperprior", "recon"), ("prompt-icm", "semseg")):
        for i in (0, 1):
            forged = with_chunks(spec_files[key], lambda cs: [c if j != i else (c[0], flags, c[2])
                                                              for j, c in enumerate(cs)])
            with pytest.raises(bitstream.UnknownValueError, match="reserved"):
                pipeline.decode_bytes(forged)
    # on a chunk of a newer minor version too (it would otherwise be skipped)
    forged = set_field(with_chunks(spec_files["hyperprior", "recon"], lambda cs: cs + [(99, flags & ~1, b"new")]),
                       "minor", bitstream.MINOR + 1)
    with pytest.raises(bitstream.UnknownValueError, match="reserved"):
        bitstream.unpack(forged)


def test_spec_method_chunks_must_be_required_and_meta_optional_json(spec_files):
    data = spec_files["context", "recon"]
    with pytest.raises(bitstream.UnknownValueError, match="hyper chunk must be required"):
        pipeline.decode_bytes(with_chunks(data, lambda cs: [(cs[0][0], 0, cs[0][2]), cs[1]]))
    meta = bitstream.ChunkType.META
    for bad in ([(meta, 1, b"{}")], [(meta, 0, b"not json")], [(meta, 0, b"\xff\xfe")],
                [(meta, 0, b"{}"), (meta, 0, b"[]")], [(meta, 0, b"[" * 100000)]):
        with pytest.raises(bitstream.UnknownValueError):
            pipeline.decode_bytes(with_chunks(data, lambda cs: cs + bad))


def test_spec_unknown_chunk_types_per_rule_9(spec_files):
    data = spec_files["hyperprior", "semseg"]
    future = with_chunks(data, lambda cs: cs + [(99, 0, b"from a newer minor")])
    with pytest.raises(bitstream.UnknownValueError, match="does not exist in format 1.1"):
        pipeline.decode_bytes(future)  # this reader's own minor defines no type 99
    assert pipeline.decode_bytes(set_field(future, "minor", bitstream.MINOR + 1)).task == "semseg"  # skipped
    with pytest.raises(bitstream.UnsupportedFeatureError):
        pipeline.decode_bytes(set_field(with_chunks(data, lambda cs: cs + [(99, 1, b"x")]), "minor", 9))
    with pytest.raises(bitstream.UnknownValueError, match="type 0 is never valid"):
        pipeline.decode_bytes(set_field(with_chunks(data, lambda cs: cs + [(0, 0, b"x")]), "minor", 9))


def test_spec_a_task_the_method_does_not_code_is_refused(spec_files):
    data = spec_files["prompt-icm", "semseg"]
    # a Prompt-ICM file codes features: no picture, so never a recon file
    recon = set_field(set_field(data, "task", int(bitstream.TaskTag.RECON)), "adapter_hash", bytes(16))
    with pytest.raises(bitstream.UnsupportedFeatureError, match="does not code task recon"):
        pipeline.decode_bytes(recon)
    with pytest.raises(bitstream.UnsupportedFeatureError, match="does not code task depth"):
        pipeline.decode_bytes(set_field(data, "task", int(bitstream.TaskTag.DEPTH)))


def test_spec_a_context_file_cannot_claim_format_1_0(spec_files):
    with pytest.raises(bitstream.UnknownValueError, match="added in 1.1"):
        pipeline.decode_bytes(set_field(spec_files["context", "recon"], "minor", 0))
    hp = set_field(spec_files["hyperprior", "recon"], "minor", 0)  # a hyperprior file is a 1.0 file
    assert pipeline.decode_bytes(hp).rgb.shape == (40, 72, 3)


def test_spec_the_writer_refuses_what_the_reader_refuses():
    hd = bitstream.Header(method=bitstream.MethodId.HYPERPRIOR, task=bitstream.TaskTag.RECON,
                          coder=bitstream.CoderId.RANGE_CATEGORICAL_V1, quality=1.0, height=8, width=8,
                          coded_height=64, coded_width=64, model_hash=bytes(16), adapter_hash=bytes([1]) * 16)
    chunks = [bitstream.Chunk(bitstream.ChunkType.HYPER, b"z"), bitstream.Chunk(bitstream.ChunkType.LATENT, b"y")]
    with pytest.raises(bitstream.UnknownValueError):
        bitstream.pack(hd, chunks)
    hd.adapter_hash = bytes(16)
    assert bitstream.unpack(bitstream.pack(hd, chunks))
    with pytest.raises(bitstream.UnknownValueError):
        bitstream.pack(hd, chunks + [bitstream.Chunk(bitstream.ChunkType.META, b"{}", required=True)])


# ---- issue 24, items 1-4: budgets, click errors, pipes, concurrent workers ---------------
# 1. absurd budgets: one below the smallest file is refused before any coding, one above
#    the largest file the format allows (2^31 bytes) means no limit, i.e. the top quality
@pytest.mark.parametrize("rate", [["--bpp", "1e308"], ["--bpp", "inf"], ["--max-bytes", "99999999999999999999"],
                                  ["--max-bytes", str(2**31)]])
def test_24_1_budgets_over_any_file_mean_the_top_quality(env, rate):
    picture(env / "a.png")
    assert icm("encode", "a.png", "--model", "test-tiny-0", "--quality", "2", "-o", "top.icm").exit_code == 0
    r = icm("encode", "a.png", "--model", "test-tiny-0", *rate, "-o", "a.icm")
    assert r.exit_code == 0, r.output
    assert (env / "a.icm").read_bytes() == (env / "top.icm").read_bytes()


@pytest.mark.parametrize("rate", [["--bpp", "nan"], ["--bpp", "-1"], ["--bpp", "0"], ["--max-bytes", "0"],
                                  ["--max-bytes", "-5"], ["--max-bytes", "91"], ["--bpp", "1e-300"]])
def test_24_1_meaningless_budgets_are_usage_errors(env, rate):
    picture(env / "a.png")
    r = icm("encode", "a.png", "--model", "test-tiny-0", *rate)
    one_line_error(r)
    assert not (env / "a.icm").exists()


@pytest.mark.parametrize("rate", [["--bpp", "1e-300"], ["--bpp", "0.0001"], ["--bpp", "0.5"], ["--max-bytes", "60"]])
def test_24_2_a_budget_below_the_smallest_file_fails_before_any_coding(env, monkeypatch, rate):
    import warnings

    picture(env / "a.png")  # 40x30: 0.5 bpp is 75 bytes, below the smallest file (92)

    def never(*a, **k):
        raise AssertionError("coded although the budget cannot be met")

    monkeypatch.setattr(pipeline, "fit_rate", never)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would end the run here
        r = icm("encode", "a.png", "--model", "test-tiny-0", *rate)
    one_line_error(r)
    assert "smallest" in r.output and not (env / "a.icm").exists()


def test_24_2_no_numpy_warning_from_rate_control(codec):
    import warnings

    rgb = reference_picture(30, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for bpp in (1e-300, 1e-4, 0.5):
            with pytest.raises(pipeline.UsageError, match="smallest"):
                pipeline.encode_image(rgb, bpp=bpp, codec=codec)
        with pytest.raises(pipeline.UsageError, match="even the lowest quality"):
            pipeline.encode_image(rgb, max_bytes=93, codec=codec)
        assert pipeline.rate_limit(30 * 40, 1e308, None) == bitstream.MAX_FILE_SIZE


# 2. every error of the command line is one line, exit 2, whatever click found wrong
@pytest.mark.parametrize("args", [
    ["encode", "a.png", "--max-bytes", "1e9"], ["encode", "a.png", "--max-bytes", "abc"],
    ["encode", "a.png", "--quality", "0x10"], ["encode", "a.png", "--bogus"], ["encode"],
    ["encode", "a.png", "--device", "tpu"], ["encode", "a.png", "--batch", "0"], ["decode"],
    ["decode", "x.icm", "--shard"], ["decode", "x.icm", "--device"], ["info"], ["info", "a", "b"],
    ["info", "--jsn", "a"], ["models", "--nope"], ["analyze", "a.png"], ["analyze", "a.png", "--task", "nope"],
    ["nosuchcommand"], ["--nope"],
])
def test_24_2_click_usage_errors_are_one_line(env, args):
    r = icm(*args)
    assert r.exit_code == 2, r.output
    assert len(r.output.splitlines()) == 1 and r.output.startswith("icm: error: "), r.output
    assert "Usage:" not in r.output and "Traceback" not in r.output


def test_24_2_help_is_still_clicks_help(env):
    for args in (["--help"], ["encode", "--help"], ["decode", "-h"], ["info", "--help"]):
        r = icm(*args)
        assert r.exit_code == 0 and r.output.startswith("Usage: ") and "Options:" in r.output
    assert "means no limit" in icm("encode", "--help").output


def test_24_2_one_line_in_a_real_process(env):
    p = subprocess.run([sys.executable, "-m", "cli.main", "encode", "a.png", "--max-bytes", "1e9"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["icm: error: invalid value for '--max-bytes': '1e9' is not a valid integer "
                                     "(see 'icm encode --help')"]


# 3. pipes and devices are refused before they are opened (each command in a process
#    of its own with a timeout: a regression must fail, not hang the suite)
def run_icm(*args, input=None, timeout=90):
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], input=input, capture_output=True,
                          text=True, timeout=timeout)


def assert_refused(p, code, n_errors=1):
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("icm: error:")]
    assert p.returncode == code, p.stderr
    assert len(errors) == n_errors and all("not a regular file" in e for e in errors), p.stderr
    assert "Traceback" not in p.stderr


def test_24_3_named_pipes_never_block(env):
    os.mkfifo(env / "p.png")
    os.mkfifo(env / "p.icm")
    picture(env / "a.png")
    assert_refused(run_icm("encode", "p.png", "--model", "test-tiny-0"), 2)
    assert len(run_icm("encode", "p.png", "--model", "test-tiny-0").stderr.splitlines()) == 1
    assert_refused(run_icm("info", "p.icm"), 2)
    assert_refused(run_icm("decode", "p.icm"), 2)
    # a stdin list: the pipe fails, the batch goes on
    p = run_icm("encode", "-", "--out-dir", "o", "--model", "test-tiny-0", input="p.png\na.png\n")
    assert_refused(p, 1)
    assert "1 ok, 1 failed" in p.stderr and (env / "o" / "a.icm").exists()
    # folder scans list pipes with a matching suffix as failures (as dangling links)
    (env / "d").mkdir()
    picture(env / "d" / "b.png")
    os.mkfifo(env / "d" / "q.png")
    os.mkfifo(env / "d" / "other.txt")  # no matching suffix: not an input at all
    p = run_icm("encode", "d", "--out-dir", "od", "--model", "test-tiny-0")
    assert_refused(p, 1)
    assert "d/q.png" in p.stderr and "1 ok, 1 failed" in p.stderr
    os.mkfifo(env / "od" / "z.icm")
    p = run_icm("decode", "od", "--out-dir", "dec")
    assert_refused(p, 1)
    assert (env / "dec" / "b.png").exists()


def test_24_3_devices_and_manifests_on_pipes(env):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    r = icm("info", "/dev/null")
    one_line_error(r)
    assert "character device" in r.output
    picture(env / "a.png")
    os.mkfifo(env / "m.jsonl")
    r = icm("encode", "a.png", "--model", "test-tiny-0", "--manifest", "m.jsonl")
    one_line_error(r)
    assert "not a regular file" in r.output and not (env / "a.icm").exists()


# 4. concurrent --skip-existing workers split the work through claim files
def live_claim(path: Path, pid: int, host=None, started=None):
    import json
    import socket
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": time.time() if started is None else started}))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_24_4_stale_claims_are_taken_over_and_fresh_ones_respected(tmp_path):
    import time

    from cli import claims as cl

    out = tmp_path / "x.icm"
    c = tmp_path / "x.icm.claim"
    live_claim(c, os.getppid())  # alive, this host
    assert not cl.Claims(True).take(out) and c.exists()
    live_claim(c, dead_pid())  # dead, this host: stale
    mine = cl.Claims(True)
    assert mine.take(out) and '"pid": %d' % os.getpid() in c.read_text()
    assert not cl.Claims(True).take(out)  # now ours, and we are alive
    mine.release(out)
    assert not c.exists()
    live_claim(c, 1, host="another-host")  # can't check its pid: fresh by age
    assert not cl.Claims(True).take(out)
    live_claim(c, 1, host="another-host", started=time.time() - cl.STALE_AFTER_S - 10)
    assert cl.Claims(True).take(out)
    c.write_bytes(b"")  # being written just now: respected, unless old
    assert not cl.Claims(True).take(out)
    os.utime(c, (time.time() - cl.STALE_AFTER_S - 10,) * 2)
    mine = cl.Claims(True)
    assert mine.take(out)
    # a claim taken over by another worker meanwhile is not ours to remove
    live_claim(tmp_path / "new", os.getppid())
    os.replace(tmp_path / "new", c)  # (made before the old one goes: another inode)
    mine.release_all()
    assert c.exists()
    assert cl.Claims(False).take(out)  # without --skip-existing, claims are not used
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".stale")]


def test_24_4_claimed_inputs_are_skipped_and_reported(env):
    (env / "in").mkdir()
    for i in range(4):
        picture(env / "in" / f"p{i}.png")
    live_claim(env / "out" / "p1.icm.claim", os.getppid())  # a live worker holds p1
    live_claim(env / "out" / "p2.icm.claim", dead_pid())  # a dead one held p2
    r = icm("encode", "in", "--out-dir", "out", "--model", "test-tiny-0", "--skip-existing")
    assert r.exit_code == 0, r.output
    assert "4 ok (1 claimed by another worker, skipped)" in r.output
    assert sorted(os.listdir(env / "out")) == ["p0.icm", "p1.icm.claim", "p2.icm", "p3.icm"]
    (env / "out" / "p1.icm.claim").unlink()
    r = icm("encode", "in", "--out-dir", "out", "--model", "test-tiny-0", "--skip-existing")
    assert "4 ok (3 already there, skipped)" in r.output
    # decode the same way; the claim file is no input of a folder scan
    live_claim(env / "dec" / "p0.png.claim", os.getppid())
    r = icm("decode", "out", "--out-dir", "dec", "--skip-existing")
    assert r.exit_code == 0 and "4 ok (1 claimed by another worker, skipped)" in r.output, r.output
    assert sorted(os.listdir(env / "dec")) == ["p0.png.claim", "p1.png", "p2.png", "p3.png"]
    (env / "in" / "p0.png.claim").write_text("x")
    assert "4 ok" in icm("encode", "in", "--out-dir", "o2", "--model", "test-tiny-0").output


# start together, so the two workers really overlap
COOPERATING = slow_icm(0.4, """
barrier = sys.argv.pop(1)
open(os.path.join(barrier, str(os.getpid())), "w").close()
deadline = time.time() + 60
while len(os.listdir(barrier)) < 2 and time.time() < deadline:
    time.sleep(0.01)
""")


def test_24_4_two_concurrent_workers_code_each_picture_once(env):
    import json
    import re

    for i in range(12):
        sub = env / "in" / ("s1" if i % 3 else "s2")
        sub.mkdir(parents=True, exist_ok=True)
        picture(sub / f"p{i}.png", (24 + i, 20))
    assert icm("encode", "in", "--out-dir", "clean", "--model", "test-tiny-0").exit_code == 0
    (env / "barrier").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", COOPERATING, str(env / "barrier"), "encode", "in", "--out-dir",
                               "out", "--model", "test-tiny-0", "--skip-existing", "--manifest", f"m{k}.jsonl"],
                              cwd=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for k in (1, 2)]
    errs = []
    try:
        for p in procs:
            errs.append(p.communicate(timeout=300)[1])
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    coded = [len((env / f"m{k}.jsonl").read_text().splitlines()) for k in (1, 2)]
    assert sum(coded) == 12 and min(coded) >= 1, (coded, errs)  # each picture once, both worked
    inputs = [json.loads(line)["input"] for k in (1, 2) for line in (env / f"m{k}.jsonl").read_text().splitlines()]
    assert len(set(inputs)) == 12
    for k, err in enumerate(errs):
        assert "12 ok" in err, err
        m = re.search(r"(\d+) claimed by another worker", err)
        skipped = int(m.group(1)) if m else 0
        there = re.search(r"(\d+) already there", err)
        assert coded[k] + skipped + (int(there.group(1)) if there else 0) == 12, err
    left = {str(p.relative_to(env / "out")) for p in (env / "out").rglob("*") if p.is_file()}
    assert left == {str(p.relative_to(env / "clean")) for p in (env / "clean").rglob("*") if p.is_file()}
    for name in left:
        assert (env / "out" / name).read_bytes() == (env / "clean" / name).read_bytes()


# ---- issue 24, item 1: a header forged to the largest picture, every method ------------
@pytest.mark.parametrize("key", SPEC_FILES, ids=lambda k: "-".join(k) if isinstance(k, tuple) else k)
def test_24_a_file_forged_to_8192x8192_is_refused_cleanly_by_every_method(spec_files, key):
    """Prompt-ICM stopped such files with an internal error (its 8.4 M pixel limit); now
    every method takes a 2**26-pixel header to its payloads, which do not decode to a
    picture that size: a clean rejection, not a crash and not a picture."""
    data = spec_files[key]
    for h, w in ((8192, 8192), (2900, 2900)):
        forged = set_field(set_field(set_field(set_field(data, "height", h), "width", w), "coded_height", h),
                           "coded_width", w + (-w % 64))
        forged = set_field(forged, "coded_height", h + (-h % 64))
        with pytest.raises(CLEAN):
            pipeline.decode_bytes(forged)
