"""The exact integer path: identical to an independent int64 reference, any threads."""
import hashlib

import numpy as np
import pytest
import torch

from icmcodec import exact
from icmcodec.coding.hyperprior import ExactHyperSynthesis, quantize_hyper_synthesis
from icmcodec.methods.hyperprior.tiny import tiny_float_model


def reference_hs(params, z_fp):
    """Pure numpy int64 version of ExactHyperSynthesis (different summation order)."""
    x = np.asarray(z_fp, dtype=np.int64)
    for i, (shuffle, relu) in enumerate(((True, True), (True, True), (False, False))):
        w, b = params[f"{i}.weight"], params[f"{i}.bias"]
        c, h, wd = x.shape
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
        acc = np.zeros((w.shape[0], h, wd), dtype=np.int64) + b[:, None, None]
        for dy in (2, 1, 0):  # reverse order on purpose
            for dx in (2, 1, 0):
                acc += np.einsum("oc,chw->ohw", w[:, :, dy, dx], xp[:, dy : dy + h, dx : dx + wd])
        x = acc >> exact.W_FRAC  # arithmetic shift == floor division
        if shuffle:
            co = x.shape[0] // 4
            x = x.reshape(co, 2, 2, h, wd).transpose(0, 3, 1, 4, 2).reshape(co, 2 * h, 2 * wd)
        if relu:
            x = np.maximum(x, 0)
        x = np.clip(x, -exact.ACT_LIMIT, exact.ACT_LIMIT)
    return np.split(x, 2, axis=0)


@pytest.fixture(scope="module")
def params():
    return quantize_hyper_synthesis(tiny_float_model(3).h_s)


def test_matches_int64_reference_at_every_thread_count(params):
    rng = np.random.default_rng(0)
    z = rng.integers(-40, 40, (8, 5, 7)) * (1 << exact.ACT_FRAC) + rng.integers(-500, 500, (8, 1, 1))
    ref_m, ref_s = reference_hs(params, z)
    hs = ExactHyperSynthesis(params)
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            m, s = hs(torch.from_numpy(z))
            np.testing.assert_array_equal(m.numpy().astype(np.int64), ref_m)
            np.testing.assert_array_equal(s.numpy().astype(np.int64), ref_s)
    finally:
        torch.set_num_threads(old)


def test_extreme_inputs_are_clamped_not_inexact(params):
    z = np.full((8, 3, 3), 10**12, dtype=np.int64)
    m, _ = ExactHyperSynthesis(params)(torch.from_numpy(z))
    ref_m, _ = reference_hs(params, np.clip(z, -exact.ACT_LIMIT, exact.ACT_LIMIT))
    np.testing.assert_array_equal(m.numpy().astype(np.int64), ref_m)


def test_out_of_bounds_weights_refused(params):
    bad = dict(params)
    bad["0.weight"] = bad["0.weight"].copy()
    bad["0.weight"][0, 0, 0, 0] = exact.W_LIMIT + 1
    with pytest.raises(ValueError):
        ExactHyperSynthesis(bad)
    model = tiny_float_model(0)
    with torch.no_grad():
        model.h_s.convs[0].weight[0, 0, 0, 0] = 100.0
    with pytest.raises(ValueError):
        quantize_hyper_synthesis(model.h_s)


def test_pow2_table_golden_and_safely_rounded():
    t = exact.pow2_table()
    assert t[0] == 1 << 16 and t[-1] == round(2 ** (1023 / 1024) * 65536)
    assert hashlib.sha256(t.astype("<i8").tobytes()).hexdigest()[:16] == "40bd213e4c1faf73"
    # every value is far from a rounding tie, so any libm rounds it the same way
    raw = 2.0 ** (np.arange(1024) / 1024) * 65536
    assert np.abs(raw - np.floor(raw) - 0.5).min() > 1e-6


def test_scale_index_rule():
    mean = torch.zeros(1, 1, 3, dtype=torch.float64)
    ls = torch.tensor([[[exact.SCALE_LS0 - 5000, exact.SCALE_LS0 + 10 * exact.SCALE_STEP, 10**6]]], dtype=torch.float64)
    idx, _ = exact.entropy_params(mean, ls, np.array([0]), exact.pow2_table())
    assert idx.ravel().tolist() == [0, 10, exact.SCALE_COUNT - 1]


def test_gained_mean_is_integer_exact():
    m = torch.tensor([[[1024.0, -3000.0]]], dtype=torch.float64)
    for lg, want in ((0, [1024, -3000]), (1024, [2048, -6000]), (-2048, [256, -750])):
        _, mg = exact.entropy_params(m, torch.zeros_like(m), np.array([lg]), exact.pow2_table())
        assert mg.ravel().tolist() == want
    _, mg = exact.entropy_params(m, torch.zeros_like(m), np.array([512]), exact.pow2_table())
    assert mg.ravel().tolist() == [(1024 * 92682) >> 16, (-3000 * 92682) >> 16]


def test_quality_interpolation():
    lg = np.array([[0, -1024], [1024, 0], [4096, 100]])
    assert exact.quality_log2_gain(lg, 0.0).tolist() == [0, -1024]
    assert exact.quality_log2_gain(lg, 0.5).tolist() == [512, -512]
    assert exact.quality_log2_gain(lg, 2.0).tolist() == [4096, 100]
    assert exact.quality_log2_gain(lg, 1.25).tolist() == [1024 + 768, 25]
    assert exact.quality_log2_gain(lg, 99).tolist() == [4096, 100]
    # below level 0: the line through levels 0 and 1 continues, exactly, then stops
    assert exact.quality_log2_gain(lg, -1.0).tolist() == [-1024, -2048]
    assert exact.quality_log2_gain(lg, -0.5).tolist() == [-512, -1536]
    assert exact.quality_log2_gain(lg, -1 / 256).tolist() == [-4, -1028]
    assert exact.quality_log2_gain(lg, -99).tolist() == exact.quality_log2_gain(lg, -exact.EXTRAPOLATE_LEVELS).tolist()
