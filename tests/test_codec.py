"""The codec end to end with the tiny seeded model: exact symbols (golden files: test_golden.py),
determinism across processes and thread counts, robustness to float noise."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import bitstream
from icmcodec import pipeline
from icmcodec.methods.hyperprior.tiny import tiny_codec, tiny_model_bytes, write_tiny_model


def gradient_image(h=40, w=50):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 5 % 256, yy * 6 % 256, (xx + yy) * 2 % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
    return tiny_codec(0)


@pytest.mark.parametrize("quality", [0.0, 0.7, 1.5, 2.0])
def test_symbols_round_trip_exactly(codec, quality):
    rgb = gradient_image()
    enc = codec.encode(rgb, bitstream.canonical_quality(quality))
    z, y, _, _ = codec.decode_symbols(enc["z"], enc["y"], enc["coded_size"], bitstream.canonical_quality(quality))
    np.testing.assert_array_equal(z, enc["z_sym"])
    np.testing.assert_array_equal(y, enc["y_sym"])


def test_rate_grows_with_quality(codec):
    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    sizes = [len(pipeline.encode_image(rgb, quality=q, codec=codec)) for q in (0, 1, 2)]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (65, 3), (64, 64), (97, 131)])
def test_any_size_decodes_to_its_size(codec, shape):
    rgb = (np.random.default_rng(1).random(shape + (3,)) * 255).astype(np.uint8)
    data = pipeline.encode_image(rgb, quality=1, codec=codec)
    out = pipeline.decode_bytes(data, codec=codec)
    assert out.rgb.shape == shape + (3,) and out.rgb.dtype == np.uint8
    assert out.bpp == 8 * len(data) / (shape[0] * shape[1])


def test_float_noise_outside_the_exact_path_keeps_symbols(codec):
    """Perturb every float weight of the decoder: pixels may move, symbols may not."""
    rgb = gradient_image()
    enc = codec.encode(rgb, 1.0)
    noisy = tiny_codec(0)
    with torch.no_grad():
        for p in list(noisy.g_s.parameters()) + list(noisy.g_a.parameters()) + list(noisy.h_a.parameters()):
            p.add_(torch.randn_like(p) * 1e-4 * p.abs().mean())
    z, y, mean, _ = noisy.decode_symbols(enc["z"], enc["y"], enc["coded_size"], 1.0)
    np.testing.assert_array_equal(z, enc["z_sym"])
    np.testing.assert_array_equal(y, enc["y_sym"])
    # and the decoder's float pipeline in float64 instead of float32: same symbols too
    noisy.g_s.double()
    z2, y2, _, _ = noisy.decode_symbols(enc["z"], enc["y"], enc["coded_size"], 1.0)
    np.testing.assert_array_equal(y2, enc["y_sym"])


def test_wrong_model_is_refused(codec):
    data = pipeline.encode_image(gradient_image(), quality=1, codec=codec)
    with pytest.raises(pipeline.UsageError):
        pipeline.decode_bytes(data, codec=tiny_codec(1))


def test_quality_outside_range_is_refused(codec):
    with pytest.raises(pipeline.UsageError):
        pipeline.encode_image(gradient_image(), quality=7, codec=codec)


SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch
    import bitstream
    torch.set_num_threads(int(sys.argv[2]))
    from icmcodec import pipeline
    codec = pipeline.load_codec(sys.argv[3])
    if sys.argv[1] == "encode":
        yy, xx = np.mgrid[0:150, 0:190]
        rgb = np.stack([(xx * 3) % 256, (yy * 2) % 256, ((xx * yy) // 7) % 256], -1).astype(np.uint8)
        open(sys.argv[4], "wb").write(pipeline.encode_image(rgb, quality=1.25, codec=codec))
        enc = codec.encode(rgb, 1.25)
        np.savez(sys.argv[4] + ".npz", z=enc["z_sym"], y=enc["y_sym"])
    else:
        data = open(sys.argv[4], "rb").read()
        c = bitstream.unpack(data)
        h = c.header
        z, y, _, _ = codec.decode_symbols(c.chunks[0].data, c.chunks[1].data, (h.coded_height, h.coded_width), h.quality)
        rgb = pipeline.decode_bytes(data, codec=codec).rgb
        np.savez(sys.argv[5], z=z, y=y, rgb=rgb)
    """
)


def run(*args):
    subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], check=True)


def test_cross_process_and_thread_count_determinism(tmp_path):
    model = write_tiny_model(tmp_path / "tiny", seed=2)
    for enc_threads, dec_threads in ((1, 2), (2, 1)):
        f = tmp_path / f"x{enc_threads}.icm"
        run("encode", enc_threads, model, f)
        sent = np.load(str(f) + ".npz")
        outs = []
        for threads in (dec_threads, enc_threads):
            run("decode", threads, model, f, tmp_path / f"d{threads}.npz")
            outs.append(np.load(tmp_path / f"d{threads}.npz"))
        for o in outs:
            np.testing.assert_array_equal(o["z"], sent["z"])
            np.testing.assert_array_equal(o["y"], sent["y"])
        np.testing.assert_array_equal(outs[0]["rgb"], outs[1]["rgb"])
    # both encodes made the same file
    assert (tmp_path / "x1.icm").read_bytes() == (tmp_path / "x2.icm").read_bytes()


def test_exported_transforms_match_the_trained_network(codec):
    """FixedGDN with baked effective parameters == compressai's re-parametrised GDN."""
    from icmcodec.methods.hyperprior.tiny import tiny_float_model

    net = tiny_float_model(0)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = net.g_a(x)
        torch.testing.assert_close(codec.g_a(x), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(codec.g_s(y), net.g_s(y), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(codec.h_a(y), net.h_a(y), rtol=1e-5, atol=1e-5)


def test_shipped_format_is_a_complete_warm_start():
    """export -> trainable_from_state -> export gives the same coding model."""
    from safetensors.numpy import load

    from icmcodec.coding.export import export_state, trainable_from_state

    config, blob = tiny_model_bytes(0)
    state = load(blob)
    again = export_state(trainable_from_state(config, state))
    assert sorted(again) == sorted(state)
    for k in state:
        if k.startswith(("exact.", "tables.")):
            np.testing.assert_array_equal(again[k], state[k], err_msg=k)
        else:
            np.testing.assert_allclose(again[k], state[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_compact_export_halves_kernels_and_keeps_gdn_and_exact_path(tmp_path):
    from safetensors.numpy import load

    from icmcodec.methods.hyperprior.codec import HyperpriorCodec
    from icmcodec.coding.export import export_state, make_config, model_hash, serialize
    from icmcodec.methods.hyperprior.tiny import TINY, tiny_float_model

    model = tiny_float_model(3)
    full, half = export_state(model), export_state(model, compact=True)
    assert half["float.g_s.0.weight"].dtype == np.float16 and half["float.g_a.0.weight"].dtype == np.float16
    assert half["float.g_s.1.gamma"].dtype == np.float32 and half["float.g_s.0.bias"].dtype == np.float32
    assert half["exact.h_s.0.weight"].dtype == np.int16 and full["exact.h_s.0.weight"].dtype == np.int32
    for k, v in full.items():  # the exact path and the tables are the same numbers
        if not k.startswith("float."):
            assert np.array_equal(v, half[k]), k
    config = make_config("t16", TINY)
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    outs = []
    for state in (full, half):
        blob = serialize(state)
        codec = HyperpriorCodec(config, load(blob), model_hash(blob), "cpu")
        data = pipeline.encode_image(rgb, quality=1, codec=codec)
        outs.append(pipeline.decode_bytes(data, codec=codec).rgb.astype(int))
    assert np.abs(outs[0] - outs[1]).mean() < 1.0  # rounding of the kernels, nothing more
