"""The context model (checkerboard + channel slices): exact symbols, its integer twin
against an independent int64 implementation, warm start equivalence, determinism."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from icmcodec import exact, pipeline
from icmcodec.exact import Plan
from icmcodec.methods.hyperprior.tiny import tiny_codec
from icmcodec.methods.context.tiny import tiny_context_codec, tiny_context_model, write_tiny_context_model


def picture(h=70, w=100, seed=0):
    yy, xx = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).normal(0, 12, (h, w, 3))
    return np.clip(np.stack([xx * 2, yy * 3, (xx + yy)], -1) % 256 + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
    return tiny_context_codec(0)


# ---- generic layers against numpy int64 -------------------------------------------
def reference(plan: Plan, params, x):
    """numpy int64, other summation order: what Plan.run must equal exactly."""
    x = np.clip(np.asarray(x, np.int64), -exact.ACT_LIMIT, exact.ACT_LIMIT)
    for op in plan.ops:
        if op[0] == "conv":
            w, b = params[f"{op[1]}.weight"], params[f"{op[1]}.bias"]
            k, r = w.shape[-1], w.shape[-1] // 2
            c, h, wd = x.shape
            xp = np.pad(x, ((0, 0), (r, r), (r, r)))
            acc = np.zeros((w.shape[0], h, wd), np.int64) + b[:, None, None]
            for dy in reversed(range(k)):
                for dx in reversed(range(k)):
                    acc += np.einsum("oc,chw->ohw", w[:, :, dy, dx], xp[:, dy:dy + h, dx:dx + wd])
            x = np.clip(acc >> exact.W_FRAC, -exact.ACT_LIMIT, exact.ACT_LIMIT)
        elif op[0] == "relu":
            x = np.maximum(x, 0)
        elif op[0] == "leaky":
            x = np.where(x >= 0, x, x >> op[1])
        elif op[0] == "shuffle":
            f = op[1]
            co, h, wd = x.shape[0] // (f * f), x.shape[1], x.shape[2]
            x = x.reshape(co, f, f, h, wd).transpose(0, 3, 1, 4, 2).reshape(co, f * h, f * wd)
    return x


def test_plan_layers_equal_int64_reference_at_every_thread_count():
    rng = np.random.default_rng(0)
    plan = Plan((("conv", 0), ("leaky", 3), ("conv", 1), ("shuffle", 2), ("relu",), ("conv", 2)))
    params = {"0.weight": rng.integers(-60000, 60000, (12, 5, 5, 5)), "0.bias": rng.integers(-2**40, 2**40, 12),
              "1.weight": rng.integers(-9000, 9000, (16, 12, 1, 1)), "1.bias": rng.integers(-2**30, 2**30, 16),
              "2.weight": rng.integers(-30000, 30000, (6, 4, 3, 3)), "2.bias": rng.integers(-2**35, 2**35, 6)}
    x = rng.integers(-exact.ACT_LIMIT, exact.ACT_LIMIT, (5, 9, 11))
    want = reference(plan, params, x)
    weights = plan.load(params, "cpu")
    old = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            np.testing.assert_array_equal(plan.run(weights, torch.from_numpy(x)).numpy().astype(np.int64), want)
    finally:
        torch.set_num_threads(old)


def test_context_twin_equals_int64_reference(codec):
    """One slice's parameters, pass 2, through the twin and through numpy."""
    from icmcodec.coding.slices import CC, EP, SC

    rng = np.random.default_rng(1)
    k, (c0, c1) = 1, codec.arch.slice_bounds()[1]
    nets = codec.ctx.nets[k]
    params = {net: {f"{i}.{leaf}": t.numpy().astype(np.int64) for i, (w, b) in nets[net].items()
                    for leaf, t in (("weight", w), ("bias", b))} for net in ("cc", "sc", "ep")}
    prev = rng.integers(-20000, 20000, (c0, 6, 8))
    anchors = rng.integers(-20000, 20000, (c1 - c0, 6, 8))
    mh, lh = rng.integers(-5000, 5000, (2, c1 - c0, 6, 8))
    cc = reference(CC, params["cc"], prev)
    sc = reference(SC, params["sc"], anchors)
    d = reference(EP, params["ep"], np.concatenate([mh, lh, cc, sc]))
    m, s = codec.ctx.params(k, torch.from_numpy(mh).double(), torch.from_numpy(lh).double(),
                            codec.ctx.channel(k, prev.astype(np.float64), (6, 8)),
                            codec.ctx.spatial(k, anchors.astype(np.float64)))
    np.testing.assert_array_equal(m.numpy().astype(np.int64), mh + d[: c1 - c0])
    np.testing.assert_array_equal(s.numpy().astype(np.int64), lh + d[c1 - c0:])


# ---- coding -------------------------------------------------------------------------
@pytest.mark.parametrize("quality", [0.0, 1.0, 2.0])
def test_symbols_round_trip(codec, quality):
    e = codec.encode(picture(), quality)
    z, y, _, _ = codec.decode_symbols(e["z"], e["y"], e["coded_size"], quality)
    np.testing.assert_array_equal(z, e["z_sym"])
    np.testing.assert_array_equal(y, e["y_sym"])


def test_zero_corrections_code_the_hyperprior_symbols():
    """The warm start: context nets whose last layer is zero give the hyperprior's
    entropy parameters, hence its symbols, slice by slice and pass by pass."""
    from safetensors.numpy import load

    from icmcodec.methods.context.codec import ContextCodec
    from icmcodec.coding.export import export_context_state as export_state
    from icmcodec.coding.export import make_config, serialize
    from icmcodec.zoo import model_hash

    model = tiny_context_model(0)
    with torch.no_grad():
        for ep in model.ctx.ep:
            ep[2].weight.zero_()
            ep[2].bias.zero_()
    blob = serialize(export_state(model))
    ctx = ContextCodec(make_config("z", model.cfg, "context"), load(blob), model_hash(blob))
    rgb = picture()
    a, b = ctx.encode(rgb, 1.5), tiny_codec(0).encode(rgb, 1.5)
    np.testing.assert_array_equal(a["y_sym"], b["y_sym"])


def test_noise_on_float_weights_changes_no_symbol(codec):
    e = codec.encode(picture(), 1.0)
    noisy = tiny_context_codec(0)
    with torch.no_grad():
        for p in list(noisy.g_s.parameters()) + list(noisy.g_a.parameters()):
            p.add_(torch.randn_like(p) * 1e-4 * p.abs().mean())
    _, y, _, _ = noisy.decode_symbols(e["z"], e["y"], e["coded_size"], 1.0)
    np.testing.assert_array_equal(y, e["y_sym"])


def test_trainable_round_trip_and_training_forward():
    from safetensors.numpy import load

    from icmcodec.coding.export import context_from_state as trainable_from_state, export_context_state as export_state
    from icmcodec.methods.context.tiny import tiny_context_bytes

    config, blob = tiny_context_bytes(0)
    state = load(blob)
    again = export_state(trainable_from_state(config, state))
    for k in state:
        if k.startswith(("exact.", "tables.")):
            np.testing.assert_array_equal(again[k], state[k], err_msg=k)
    model = tiny_context_model(0).train()
    out = model(torch.rand(2, 3, 64, 64), torch.tensor([0, 2]))
    assert out["x_hat"].shape == (2, 3, 64, 64) and out["y_lik"].shape == (2, 16, 4, 4)
    (-torch.log2(out["y_lik"]).sum()).backward()
    assert model.ctx.ep[1][2].weight.grad.abs().sum() > 0


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(int(sys.argv[1]))
    from icmcodec import pipeline
    import bitstream
    codec = pipeline.load_codec(sys.argv[2], device="cpu")
    c = bitstream.unpack(open(sys.argv[3], "rb").read()); h = c.header
    z, y, _, _ = codec.decode_symbols(c.chunks[0].data, c.chunks[1].data, (h.coded_height, h.coded_width), h.quality)
    np.save(sys.argv[4], y)
""")


def test_files_decode_alike_across_threads_and_processes(tmp_path):
    folder = write_tiny_context_model(tmp_path / "ctx")
    codec = pipeline.load_codec(str(folder), device="cpu")
    rgb = picture(90, 130, seed=3)
    data = pipeline.encode_image(rgb, quality=1.25, codec=codec)
    (tmp_path / "x.icm").write_bytes(data)
    sent = codec.encode(rgb, 1.25)["y_sym"]
    for t in (1, 2):
        subprocess.run([sys.executable, "-c", SCRIPT, str(t), str(folder), str(tmp_path / "x.icm"),
                        str(tmp_path / f"y{t}.npy")], check=True, capture_output=True)
        np.testing.assert_array_equal(np.load(tmp_path / f"y{t}.npy"), sent)
