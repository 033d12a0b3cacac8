"""The exact coding components (:mod:`icmcodec.coding`) on their own, and composed as the
methods compose them: the same bytes as the method codecs; and the layer rule that lets
methods share them (no method's codec imports another method)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load

from icmcodec.coding import (ChannelSlices, Checkerboard, ExactHyperSynthesis, FactorizedZ, GaussianConditional,
                             HyperOutput, Hyperprior, anchors, padded_size)
from icmcodec.exact import ACT_FRAC
from icmcodec.layers.transforms import HyperpriorConfig, build_transforms
from icmcodec.zoo import model_hash
from icmcodec.methods.context.tiny import tiny_context_bytes
from icmcodec.methods.hyperprior.tiny import tiny_model_bytes

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "icmcodec" / "methods"


def picture(h=100, w=140, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 2, yy * 2, xx + yy], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


# ---- the checkerboard on its own ---------------------------------------------------------
def _toy_group(gaussian, seed):
    """Parameter and spatial-context functions of a toy group: the anchors' mean from a
    fixed field, the rest's from their decoded anchor neighbours (integer rules)."""
    rng = np.random.default_rng(seed)
    m, h, w = 3, 6, 8
    mean0 = rng.integers(-2 << ACT_FRAC, 2 << ACT_FRAC, (m, h, w))
    ls0 = rng.integers(0, 3 << ACT_FRAC, (m, h, w))
    seen = []

    def params(sc):
        if sc is None:
            return mean0, ls0
        return sc, ls0 - (1 << ACT_FRAC)  # the rest: predicted from the anchors, sharper

    def spatial(anchors_fp):
        seen.append(anchors_fp.copy())
        p = np.pad(anchors_fp.astype(np.int64), ((0, 0), (1, 1), (1, 1)))
        return (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) // 4

    y = (rng.normal(0, 3, (m, h, w)) + mean0 / (1 << ACT_FRAC)).astype(np.float32)
    return y, params, spatial, seen


def test_the_checkerboard_round_trips_a_random_latent_exactly():
    config, blob = tiny_model_bytes(0)
    gaussian = GaussianConditional.from_state(load(blob))
    lg = gaussian.gains(2.5)[:3]
    cb = Checkerboard(gaussian)

    y, params, spatial, seen_enc = _toy_group(gaussian, 1)
    enc = gaussian.coder.encoder()
    sym, y_hat = cb.encode(enc, y, lg, params, spatial)
    data = enc.finish()

    _, params, spatial, seen_dec = _toy_group(gaussian, 1)
    dec = gaussian.coder.decoder(data)
    sym2, y_hat2 = cb.decode(dec, y.shape, lg, params, spatial)
    dec.finish()
    np.testing.assert_array_equal(sym, sym2)
    np.testing.assert_array_equal(y_hat, y_hat2)
    # the second pass saw exactly the decoded anchors (non-anchors zero), on both sides
    a = anchors(*y.shape[1:])
    np.testing.assert_array_equal(seen_enc[0], seen_dec[0])
    assert not seen_enc[0][:, ~a].any() and seen_enc[0][:, a].any()
    # y_hat is the un-gained decoded latent: close to y (symbols of unit step at the gain)
    gain = np.exp2(lg / (1 << ACT_FRAC))[:, None, None]
    assert np.abs(y_hat / (1 << ACT_FRAC) - y).max() <= 0.5 / gain.min() + 1e-3


# ---- composed as the methods compose them ---------------------------------------------
def _float_h_a(config, state):
    arch = HyperpriorConfig.from_dict({k: v for k, v in config["arch"].items()
                                       if k in HyperpriorConfig.__dataclass_fields__})
    h_a = build_transforms(arch)[2]
    h_a.load_state_dict({k[len("float.h_a."):]: torch.from_numpy(np.asarray(v, np.float32))
                         for k, v in state.items() if k.startswith("float.h_a.")})
    return arch, h_a.eval()


def _components_code(codec, hyper: Hyperprior, rgb, quality):
    """Encode with the components (the codec's tiled g_a only), then decode."""
    ph, pw = padded_size(*rgb.shape[:2])
    y = codec._analysis(np.pad(rgb, ((0, ph - rgb.shape[0]), (0, pw - rgb.shape[1]), (0, 0)), mode="edge"))
    tile = codec.tiling.hyper_synthesis
    z_sym, z_bytes, out = hyper.analyse(hyper.analysis(y, codec.tiling.hyper_analysis), tile)
    y_bytes, y_sym = hyper.encode(y, out, quality)
    z2, decoded = hyper.decode(z_bytes, y_bytes, z_sym.shape, quality, tile)
    np.testing.assert_array_equal(z2, z_sym)
    np.testing.assert_array_equal(decoded[0], y_sym)
    return z_bytes, y_bytes


def test_a_hyperprior_with_gaussian_y_gives_the_hyperprior_codecs_bytes():
    from icmcodec.methods.hyperprior.codec import HyperpriorCodec

    config, blob = tiny_model_bytes(0)
    state = load(blob)
    codec = HyperpriorCodec(config, state, model_hash(blob))
    arch, h_a = _float_h_a(config, state)
    hyper = Hyperprior(h_a, ExactHyperSynthesis.from_state(state), FactorizedZ.from_state(state),
                       GaussianConditional.from_state(state), arch.M)
    rgb = picture()
    enc = codec.code(codec.analyse(rgb), 1.5)
    assert _components_code(codec, hyper, rgb, 1.5) == (enc.chunks[0].data, enc.chunks[1].data)


def test_a_hyperprior_with_slices_of_checkerboards_gives_the_context_codecs_bytes():
    from icmcodec.methods.context.codec import ContextCodec

    config, blob = tiny_context_bytes(0)
    state = load(blob)
    codec = ContextCodec(config, state, model_hash(blob))
    arch, h_a = _float_h_a(config, state)
    slices = [tuple(b) for b in codec.arch.slice_bounds()]
    y_codec = ChannelSlices.from_state(state, slices, config["arch"]["hidden"])
    assert len(slices) > 1 and y_codec.needs_whole_hyper
    hyper = Hyperprior(h_a, ExactHyperSynthesis.from_state(state), FactorizedZ.from_state(state), y_codec, arch.M)
    rgb = picture(seed=2)
    enc = codec.code(codec.analyse(rgb), 0.75)
    assert _components_code(codec, hyper, rgb, 0.75) == (enc.chunks[0].data, enc.chunks[1].data)


def test_the_gaussian_parameters_are_the_same_whole_or_in_tiles():
    config, blob = tiny_model_bytes(1)
    state = load(blob)
    arch, h_a = _float_h_a(config, state)
    hyper = Hyperprior(h_a, ExactHyperSynthesis.from_state(state), FactorizedZ.from_state(state),
                       GaussianConditional.from_state(state), arch.M)
    z_sym = np.random.default_rng(3).integers(-3, 4, (arch.Nz, 5, 7))
    whole = hyper.y.latent_params(HyperOutput(hyper, z_sym, 64, hyper.hyper_params(z_sym, 64)), 2.0)
    tiled = hyper.y.latent_params(HyperOutput(hyper, z_sym, 2), 2.0)
    for a, b in zip(whole, tiled):
        np.testing.assert_array_equal(a, b)


# ---- the layer rule ------------------------------------------------------------------
def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules a file imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text())
    nodes = []
    if top_level_only:
        todo = list(tree.body)
        while todo:  # module-level statements, also inside if/try blocks
            n = todo.pop()
            if isinstance(n, (ast.If, ast.Try)):
                todo += n.body + n.orelse + getattr(n, "finalbody", []) + [s for h in getattr(n, "handlers", [])
                                                                           for s in h.body]
            else:
                nodes.append(n)
    else:
        nodes = list(ast.walk(tree))
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
            out |= {f"{n.module}.{a.name}" for a in n.names}
    return out


def _file_of(module: str) -> Path | None:
    p = ROOT.joinpath(*module.split("."))
    for f in (p.with_suffix(".py"), p / "__init__.py"):
        if f.is_file():
            return f
    return None


def _loaded_with(module: str) -> set[str]:
    """icmcodec modules imported (at module level) when ``module`` is."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen or not m.startswith("icmcodec") or _file_of(m) is None:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages load first
        todo += sorted(_imports(_file_of(m), top_level_only=True))
    return seen


METHOD_NAMES = sorted(p.name for p in METHODS.iterdir() if (p / "codec.py").is_file())


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_no_method_codec_imports_another_method(method):
    others = [m for m in METHOD_NAMES if m != method]
    direct = _imports(METHODS / method / "codec.py")
    bad = sorted(i for i in direct for o in others if i == f"icmcodec.methods.{o}" or
                 i.startswith(f"icmcodec.methods.{o}."))
    assert not bad, f"methods/{method}/codec.py imports {bad}"
    # nor through what it loads: another method's modules (its package's spec aside)
    loaded = _loaded_with(f"icmcodec.methods.{method}.codec")
    bad = sorted(m for m in loaded for o in others if m.startswith(f"icmcodec.methods.{o}."))
    assert not bad, f"importing methods/{method}/codec.py loads {bad}"


def test_the_coding_layer_imports_nothing_above_it():
    # (the model store, icmcodec.zoo, is below it: the shared exporter writes model folders)
    above = ("icmcodec.methods", "icmcodec.pipeline", "icmcodec.registry", "icmcodec.api", "icmcodec.bench",
             "icmcodec.train", "icmcodec.export", "cli")
    for f in sorted((ROOT / "icmcodec" / "coding").glob("*.py")):
        bad = sorted(i for i in _imports(f) if i.startswith(above))
        assert not bad, f"{f.name} imports {bad}"
    for f in sorted((ROOT / "icmcodec" / "layers").glob("*.py")):
        bad = sorted(i for i in _imports(f) if i.startswith(above + ("icmcodec.coding",)))
        assert not bad, f"layers/{f.name} imports {bad}"
