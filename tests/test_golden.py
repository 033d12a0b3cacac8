"""Golden tests pinned from fixed bytes (``tests/fixtures/golden``, see make_golden.py).

Only what is identical on every machine is pinned exactly: the symbols a stored file
decodes to (the exact integer path). Exported model bytes and encoder output come from
float kernels that follow the CPU's vector unit, so they are compared between two runs
in one environment, never against a stored digest. The cross-capability test runs the
same checks under every torch CPU capability this machine has (``ATEN_CPU_CAPABILITY``),
so a test that pins a float kernel's result fails on the machine that writes it.
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bitstream
from icmcodec import pipeline

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_DIR = FIXTURES / "golden"
GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text())
sys.path.insert(0, str(FIXTURES))
from make_golden import reference_picture, symbol_digest  # noqa: E402

# Float synthesis: a decoded value may move by rounding on another CPU or thread count.
PIXEL_MAX_STEP = 2
PIXEL_MAX_FRACTION = 0.01


def codec_of(name: str):
    return pipeline.load_codec(str(GOLDEN_DIR / "tiny") if name == "tiny" else name, device="cpu")


def decoded_symbols(codec, data: bytes):
    c = bitstream.unpack(data)
    h = c.header
    z, y, _, _ = codec.decode_symbols(c.get(bitstream.ChunkType.HYPER)[0], c.get(bitstream.ChunkType.LATENT)[0],
                                      (h.coded_height, h.coded_width), h.quality)
    return z, y


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_stored_file_decodes_to_stored_symbols(name):
    data = (GOLDEN_DIR / f"{name}.icm").read_bytes()
    assert hashlib.sha256(data).hexdigest() == GOLDEN[name]["file_sha256"]
    # the hp-* files were made as format 1.0: a 1.1 reader must read them unchanged
    assert f"{data[8]}.{data[9]}" == GOLDEN[name]["format"]
    codec = codec_of(name)
    assert codec.model_hash.hex() == GOLDEN[name]["model_hash"] == bitstream.unpack(data).header.model_hash.hex()
    assert symbol_digest(*decoded_symbols(codec, data)) == GOLDEN[name]["symbols_sha256"]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_stored_file_decodes_to_the_stored_picture_within_rounding(name):
    data = (GOLDEN_DIR / f"{name}.icm").read_bytes()
    out = pipeline.decode_bytes(data, codec=codec_of(name)).rgb.astype(int)
    ref = np.asarray(Image.open(GOLDEN_DIR / f"{name}.png"), dtype=int)
    assert out.shape == ref.shape == reference_picture().shape
    diff = np.abs(out - ref)
    assert diff.max() <= PIXEL_MAX_STEP and (diff > 0).mean() <= PIXEL_MAX_FRACTION


def test_stored_tiny_model_is_the_tiny_model_byte_for_byte():
    """A fresh export of the tiny model is the stored file, on every CPU: export rounds
    floats into integers only in the entropy tables; the Gaussian ones have bit-identical
    halves (test_entropy), and the margin test below shows that float64 noise cannot move
    any count of the factorized prior's."""
    from icmcodec.methods.hyperprior.tiny import tiny_model_bytes

    assert tiny_model_bytes(0)[1] == (GOLDEN_DIR / "tiny" / "model.safetensors").read_bytes()


def test_z_tables_are_far_from_every_rounding_boundary():
    """The prior's float64 values that decide the tiny model's z tables sit at least
    1e-6 counts from any value where a count would change. Measured between
    ATEN_CPU_CAPABILITY=default, avx2 and avx512, the same values differ by at most
    3.7e-9 counts (1.9e-14 relative), so no CPU path can change the tables; in float32
    they moved counts by up to 4 (issue 9)."""
    from icmcodec.coding.export import z_tables
    from icmcodec.methods.hyperprior.tiny import tiny_float_model

    *_, margin = z_tables(tiny_float_model(0).entropy_bottleneck, margin=True)
    assert margin > 1e-6


def test_count_margin_is_the_distance_to_the_next_change():
    from icmcodec.entropy.tables import MIN_COUNT, TABLE_TOTAL, count_margin, counts_from_pmf

    # two equal entries share the remainder: a tie at the cut is a zero margin
    assert count_margin(np.array([0.5, 0.5]), 0.0) == 0.0
    # scaled values 1000.001, 2000.6 and the rest (escape): the first is 0.001 above a floor
    free = TABLE_TOTAL - 3 * MIN_COUNT
    v = np.array([1000.001, 2000.6])
    pmf, esc = v / free, (free - v.sum()) / free
    m = count_margin(pmf, esc)
    assert abs(m - 0.001) < 1e-6
    base = counts_from_pmf(pmf, esc)
    for d in (0.4 * m, -0.4 * m):  # within the margin: the same table
        np.testing.assert_array_equal(counts_from_pmf(pmf + [d / free, 0], esc - d / free), base)
    moved = counts_from_pmf(pmf + [-2 * m / free, 0], esc + 2 * m / free)  # past it: not
    assert moved[0] == base[0] - 1 and moved.sum() == TABLE_TOTAL


def test_export_is_reproducible_in_one_environment():
    from icmcodec.methods.hyperprior.tiny import tiny_model_bytes

    code = "import sys; from icmcodec.methods.hyperprior.tiny import tiny_model_bytes; sys.stdout.buffer.write(tiny_model_bytes(0)[1])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert tiny_model_bytes(0)[1] == tiny_model_bytes(0)[1] == other


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encoding_is_reproducible_and_round_trips(name):
    codec = codec_of(name)
    rgb = reference_picture()
    q = GOLDEN[name]["quality"]
    data = pipeline.encode_image(rgb, quality=q, codec=codec)
    assert data == pipeline.encode_image(rgb, quality=q, codec=codec)
    enc = codec.encode(rgb, q)
    z, y = decoded_symbols(codec, data)
    np.testing.assert_array_equal(z, enc["z_sym"])
    np.testing.assert_array_equal(y, enc["y_sym"])


def cpu_capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this machine can run, lowest first."""
    import torch

    top = torch.backends.cpu.get_cpu_capability().lower()
    order = ["default", "avx2", "avx512"]
    return order[: order.index(top) + 1] if top in order else ["default", top]


WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    sys.path.insert(0, sys.argv[1])
    from make_golden import reference_picture, symbol_digest
    from icmcodec import pipeline
    import bitstream
    golden_dir, mode, out = sys.argv[2], sys.argv[3], sys.argv[4]
    codec = pipeline.load_codec(golden_dir + "/tiny", device="cpu")
    res = {"capability": torch.backends.cpu.get_cpu_capability().lower()}
    def symbols(data):
        c = bitstream.unpack(data); h = c.header
        z, y, _, _ = codec.decode_symbols(c.chunks[0].data, c.chunks[1].data, (h.coded_height, h.coded_width), h.quality)
        return symbol_digest(z, y)
    if mode == "encode":
        rgb = reference_picture()
        data = pipeline.encode_image(rgb, quality=1.5, codec=codec)
        open(out + ".icm", "wb").write(data)
        enc = codec.encode(rgb, 1.5)
        res["sent"] = symbol_digest(enc["z_sym"], enc["y_sym"])
        res["golden"] = symbols(open(golden_dir + "/tiny.icm", "rb").read())
    else:
        res["decoded"] = {f: symbols(open(f, "rb").read()) for f in sys.argv[5:]}
    open(out + ".json", "w").write(json.dumps(res))
    """
)


def test_files_decode_to_the_same_symbols_under_every_cpu_capability(tmp_path):
    """Encode under each capability, decode every file under each: same symbols."""
    caps = cpu_capabilities()

    def run(cap, *args):
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
        subprocess.run([sys.executable, "-c", WORKER, str(FIXTURES), str(GOLDEN_DIR), *map(str, args)],
                       env=env, check=True, capture_output=True)

    sent = {}
    for cap in caps:
        run(cap, "encode", tmp_path / f"enc-{cap}")
        res = json.loads((tmp_path / f"enc-{cap}.json").read_text())
        assert res["capability"] == cap  # the variable really took effect
        assert res["golden"] == GOLDEN["tiny"]["symbols_sha256"]
        sent[str(tmp_path / f"enc-{cap}.icm")] = res["sent"]
    for cap in caps:
        run(cap, "decode", tmp_path / f"dec-{cap}", *sent)
        assert json.loads((tmp_path / f"dec-{cap}.json").read_text())["decoded"] == sent
