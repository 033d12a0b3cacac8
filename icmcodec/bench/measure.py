"""Measurements shared by the benchmarks: PSNR, MS-SSIM, peak memory, BD metrics."""
from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images over all channels (inf when identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


_MS_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def _gauss_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _filter_valid(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable Gaussian over H and W, keeping only the 'valid' part (no padding)."""
    from scipy.ndimage import correlate1d

    r = len(win) // 2
    y = correlate1d(correlate1d(x, win, axis=0, mode="constant"), win, axis=1, mode="constant")
    return y[r:-r, r:-r]


def _ssim_parts(a: np.ndarray, b: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _filter_valid(a, win), _filter_valid(b, win)
    saa = _filter_valid(a * a, win) - mu_a**2
    sbb = _filter_valid(b * b, win) - mu_b**2
    sab = _filter_valid(a * b, win) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    ssim = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs
    return float(ssim.mean()), float(cs.mean())


def _halve(x: np.ndarray) -> np.ndarray:
    # 2x2 average pooling; an odd side gets one zero row/column in front, as
    # torch's avg_pool2d(kernel 2, padding 1) does in the reference implementation
    x = np.pad(x, ((x.shape[0] % 2, 0), (x.shape[1] % 2, 0)))
    h, w = x.shape
    return x.reshape(h // 2, 2, w // 2, 2).mean((1, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two 8-bit RGB images (Wang et al. 2003: 5 scales, 11-tap Gaussian
    with sigma 1.5, 'valid' filtering, 2x2 average down-sampling, per channel then
    averaged; the same definition as pytorch_msssim). None below 176 px a side, where
    the coarsest scale would be smaller than the window."""
    if min(a.shape[:2]) < 176:
        return None
    win = _gauss_window()
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float32), b[..., c].astype(np.float32)
        mcs = []
        for level in range(5):
            ssim, cs = _ssim_parts(x, y, win)
            if level < 4:
                mcs.append(max(cs, 0.0))
                x, y = _halve(x), _halve(y)
        vals.append(float(np.prod(np.array(mcs + [max(ssim, 0.0)]) ** _MS_WEIGHTS)))
    return float(np.mean(vals))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident memory above the starting level while the block runs.

    Samples ``/proc/self/statm`` every 5 ms in a thread (Linux); ``peak`` is in
    bytes. Process-wide, so run one codec at a time.
    """

    def __enter__(self):
        self.base = self.peak_abs = _rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak_abs = max(self.peak_abs, _rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak_abs = max(self.peak_abs, _rss_bytes())
        self.peak = self.peak_abs - self.base
        return False


def rd_curve(bpp, metric) -> tuple[np.ndarray, np.ndarray]:
    """Sort by rate and keep a strictly increasing metric (pchip needs monotone data)."""
    pts = sorted((float(r), float(d)) for r, d in zip(bpp, metric) if d is not None and np.isfinite(d))
    rate, dist = [], []
    for r, d in pts:
        if not dist or d > dist[-1]:
            rate.append(r)
            dist.append(d)
    return np.array(rate), np.array(dist)


def _overlap(da, dt) -> bool:
    return len(da) >= 2 and len(dt) >= 2 and min(da.max(), dt.max()) > max(da.min(), dt.min())


def _bd(kind: str, anchor: tuple, test: tuple) -> float | None:
    import bjontegaard as bd

    ra, da = rd_curve(*anchor)
    rt, dt = rd_curve(*test)
    # BD-rate integrates over the shared quality range, BD-metric over the shared rates
    if not (_overlap(da, dt) if kind == "rate" else _overlap(ra, rt)):
        return None
    fn = bd.bd_rate if kind == "rate" else bd.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(ra, da, rt, dt, method="pchip", require_matching_points=False, min_overlap=0))


def bd_rate(anchor: tuple, test: tuple) -> float | None:
    """BD-rate (%) of test (bpp, metric) against anchor; pchip, overlapping range only."""
    return _bd("rate", anchor, test)


def bd_metric(anchor: tuple, test: tuple) -> float | None:
    """BD-PSNR (or BD of any metric) of test against anchor; pchip, overlap only."""
    return _bd("metric", anchor, test)
