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


def _filter_valid(x, win):
    """Separable Gaussian over H and W of a (1, K, H, W) tensor, each of the K maps on
    its own, keeping only the 'valid' part (no padding)."""
    import torch.nn.functional as F

    k, n = x.shape[1], win.numel()
    x = F.conv2d(x, win.view(1, 1, n, 1).expand(k, 1, n, 1), groups=k)
    return F.conv2d(x, win.view(1, 1, 1, n).expand(k, 1, 1, n), groups=k)


def _halve(x):
    # 2x2 average pooling; an odd side gets one zero row/column in front, as in the
    # reference implementation (avg_pool2d, kernel 2, padding = side % 2)
    import torch.nn.functional as F

    return F.avg_pool2d(x, 2, padding=(x.shape[2] % 2, x.shape[3] % 2))


def _channel_means(x) -> np.ndarray:
    return x[0].flatten(1).double().mean(1).numpy()  # float64 sums: float32 drifts


class MsSsim:
    """MS-SSIM against one reference picture (Wang et al. 2003: 5 scales, 11-tap
    Gaussian with sigma 1.5, 'valid' filtering, 2x2 average down-sampling, per channel
    then averaged; the same definition as pytorch_msssim), computed with torch.

    The reference's pyramid, local means and local energies are computed once, so each
    further comparison filters only three maps per channel and scale instead of five:
    a benchmark scores dozens of decoded versions of every picture."""

    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def __init__(self, ref: np.ndarray):
        import torch

        self.shape = ref.shape
        self.ok = min(ref.shape[:2]) >= 176  # below, the coarsest scale is smaller than the window
        self.win = torch.from_numpy(_gauss_window())
        self.levels = []
        x = self._tensor(ref)
        with torch.no_grad():
            for level in range(5 if self.ok else 0):
                mu = _filter_valid(x, self.win)
                self.levels.append((x, mu, _filter_valid(x * x, self.win) - mu**2))
                if level < 4:
                    x = _halve(x)

    @staticmethod
    def _tensor(img: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]

    def __call__(self, img: np.ndarray) -> float | None:
        import torch

        if not self.ok:
            return None
        if img.shape != self.shape:
            raise ValueError(f"MS-SSIM of a {img.shape} picture against a {self.shape} reference")
        y = self._tensor(img)
        mcs = []
        with torch.no_grad():
            for level, (x, mu_x, sxx) in enumerate(self.levels):
                mu_y = _filter_valid(y, self.win)
                syy = _filter_valid(y * y, self.win) - mu_y**2
                sxy = _filter_valid(x * y, self.win) - mu_x * mu_y
                cs_map = (2 * sxy + self.C2) / (sxx + syy + self.C2)
                if level < 4:
                    mcs.append(np.maximum(_channel_means(cs_map), 0.0))
                    y = _halve(y)
                else:
                    ssim_map = (2 * mu_x * mu_y + self.C1) / (mu_x**2 + mu_y**2 + self.C1) * cs_map
                    mcs.append(np.maximum(_channel_means(ssim_map), 0.0))
        per_channel = np.prod(np.stack(mcs) ** _MS_WEIGHTS[:, None], axis=0)
        return float(per_channel.mean())


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two 8-bit RGB images (see :class:`MsSsim`); None below 176 px a side."""
    return MsSsim(a)(b)


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
