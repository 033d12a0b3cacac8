"""Benchmark measurements on inputs with known answers."""
import numpy as np
import pytest

from icmcodec.bench.anchors import all_anchors
from icmcodec.bench.measure import PeakMemory, bd_metric, bd_rate, ms_ssim, psnr, rd_curve
from icmcodec.bench.rd import center_crop


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[...] = 1  # mse 1 -> 10 log10(255^2)
    assert psnr(a, b) == pytest.approx(48.1308, abs=1e-4)


def test_ms_ssim_identity_and_small_images():
    rng = np.random.default_rng(0)
    a = (rng.random((177, 180, 3)) * 255).astype(np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(a, 255 - a) < 0.5
    assert ms_ssim(a[:100], a[:100]) is None


def test_ms_ssim_matches_the_reference_implementation():
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("pytorch_msssim")
    rng = np.random.default_rng(3)
    a = (rng.random((201, 230, 3)) * 255).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    t = lambda x: torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]  # noqa: E731
    assert ms_ssim(a, b) == pytest.approx(float(reference.ms_ssim(t(a), t(b), data_range=255)), abs=1e-5)


def test_bd_rate_known_answers():
    rate = np.array([0.2, 0.4, 0.8, 1.6])
    dist = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate((rate, dist), (rate, dist)) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate((rate, dist), (rate * 0.9, dist)) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate((rate, dist), (rate * 1.25, dist)) == pytest.approx(25.0, abs=1e-6)
    assert bd_metric((rate, dist), (rate, dist + 0.5)) == pytest.approx(0.5, abs=1e-6)
    assert bd_rate((rate, dist), (rate, dist + 20)) is None  # no overlap


def test_rd_curve_drops_non_monotone_points():
    r, d = rd_curve([0.3, 0.1, 0.2, 0.4], [30, 28, 27, 31])
    assert r.tolist() == [0.1, 0.3, 0.4] and d.tolist() == [28, 30, 31]


def test_jpeg_anchor_round_trip_and_memory():
    rgb = (np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)
    jpeg = all_anchors()["jpeg"]
    assert jpeg.available()
    data = jpeg.encode(rgb, 90)
    assert data[:2] == b"\xff\xd8" and jpeg.decode(data).shape == rgb.shape
    with PeakMemory() as m:
        block = np.ones(40 * 2**20, np.uint8)  # 40 MB touched, alive until the end
    assert m.peak >= 30 * 2**20
    del block


def test_center_crop_handles_portrait():
    a = np.zeros((900, 600, 3), np.uint8)
    assert center_crop(a, 768, 512).shape == (768, 512, 3)
    with pytest.raises(ValueError):
        center_crop(np.zeros((100, 100, 3), np.uint8), 768, 512)
