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


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (5 scales, pytorch_msssim) on 8-bit RGB; None below 161 px a side."""
    if min(a.shape[:2]) < 161:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(np.array(b, dtype=np.float32)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255.0))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident memory above the starting level while the block runs.

    Samples ``/proc/self/statm`` every millisecond in a thread (Linux); ``peak`` is in
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
            time.sleep(0.001)

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


def bd_rate(anchor: tuple, test: tuple) -> float | None:
    """BD-rate (%) of test (bpp, metric) against anchor; pchip, overlapping range only."""
    import bjontegaard as bd

    ra, da = rd_curve(*anchor)
    rt, dt = rd_curve(*test)
    if not _overlap(da, dt):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bd.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False, min_overlap=0))


def bd_metric(anchor: tuple, test: tuple) -> float | None:
    """BD-PSNR (or BD of any metric) of test against anchor; pchip, overlap only."""
    import bjontegaard as bd

    ra, da = rd_curve(*anchor)
    rt, dt = rd_curve(*test)
    if not _overlap(ra, rt):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bd.bd_psnr(ra, da, rt, dt, method="pchip", require_matching_points=False, min_overlap=0))
