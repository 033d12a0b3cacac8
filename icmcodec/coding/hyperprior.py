"""The hyperprior: y -> h_a -> z (factorized), and z -> exact h_s -> the parameters a
y codec codes y with. Two chunks: HYPER (z) then LATENT (y).

:class:`Hyperprior` composes

* ``h_a``, a float module run in tiles (encoder only; its rounding noise can change a
  z symbol, never how a file decodes),
* a :class:`~icmcodec.coding.factorized.FactorizedZ`,
* :class:`ExactHyperSynthesis`, the integer twin of h_s (three 3x3 convolutions with a
  2x pixel shuffle and a ReLU after the first two; :func:`quantize_hyper_synthesis`
  converts the trained float h_s once at export), run in tiles,
* a y codec: :class:`~icmcodec.coding.gaussian.GaussianConditional` (parameters from
  h_s alone) or :class:`~icmcodec.coding.slices.ChannelSlices` (channel slices of
  checkerboards refining them). A y codec has ``encode(y, hyper, quality) -> (bytes,
  symbols)``, ``decode(bytes, hyper, quality) -> decoded``, ``reconstruction(decoded)``
  and ``needs_whole_hyper``; ``hyper`` is a :class:`HyperOutput`.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from icmcodec.coding.factorized import FactorizedZ
from icmcodec.exact import Plan, quantize_conv
from icmcodec.tiling import run_tiled

HS_PLAN = Plan((("conv", 0), ("shuffle", 2), ("relu",), ("conv", 1), ("shuffle", 2), ("relu",), ("conv", 2)))
# a hyper output (two int64 arrays) is kept for latents up to this many values (6.3 M:
# a 3840x2160 picture); above it each quality recomputes it in tiles
CACHE_HYPER = 1 << 23


def quantize_hyper_synthesis(h_s) -> dict[str, np.ndarray]:
    """Trained float ``HyperSynthesis`` -> integer weights/biases (checked bounds)."""
    out = {}
    for i, c in enumerate(h_s.convs):
        for leaf, v in quantize_conv(c, f"h_s conv {i}").items():
            out[f"{i}.{leaf}"] = v
    return out


class ExactHyperSynthesis:
    """Integer twin of ``HyperSynthesis``: z (fixed point) -> (mean, log2 scale)."""

    plan = HS_PLAN

    def __init__(self, params: dict[str, np.ndarray], device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.weights = self.plan.load(params, self.device)

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], device="cpu", prefix: str = "exact.h_s.") -> "ExactHyperSynthesis":
        return cls({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, device)

    def __call__(self, z_fp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_fp``: (Nz, h, w) fixed-point ints -> (mean_fp, log2_scale_fp), each (M, 4h, 4w)."""
        mean, log2_scale = self.plan.run(self.weights, z_fp.to(self.device)).chunk(2, dim=0)
        return mean, log2_scale


class HyperOutput:
    """The exact h_s's output for one z: ``cached`` (mean, log2 scale) int64 arrays, or
    None and computed in tiles when asked (:meth:`each_tile`, :meth:`whole`)."""

    def __init__(self, hyperprior: "Hyperprior", z_sym: np.ndarray, tile: int, cached: tuple | None = None):
        self.hyperprior, self.z_sym, self.tile, self.cached = hyperprior, z_sym, tile, cached
        _, hz, wz = z_sym.shape
        self.shape = (hyperprior.channels, 4 * hz, 4 * wz)

    def each_tile(self, put) -> None:
        """``put(oy0, oy1, ox0, ox1, part)`` for every tile, ``part`` a (2, M, h, w) tensor."""
        self.hyperprior.each_hyper_tile(self.z_sym, self.tile, put)

    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        if self.cached is None:
            self.cached = self.hyperprior.hyper_params(self.z_sym, self.tile)
        return self.cached


class Hyperprior:
    """h_a, factorized z, the exact h_s and a y codec (see the module docstring)."""

    def __init__(self, h_a, h_s: ExactHyperSynthesis, z: FactorizedZ, y, channels: int, device="cpu"):
        self.h_a, self.h_s, self.z, self.y = h_a, h_s, z, y
        self.channels = channels  # M
        self.device = torch.device(device)

    # ---- h_a, in tiles (encoder) ---------------------------------------------------
    @torch.no_grad()
    def analysis(self, y: np.ndarray, tile: int) -> np.ndarray:
        """y -> z, Nz x H/4 x W/4 float64 (h_a in tiles of ``tile`` latents, halo 8)."""
        _, hy, wy = y.shape
        z = np.empty((self.z.channels, hy // 4, wy // 4), dtype=np.float64)

        def h_a(y0, y1, x0, x1):
            return self.h_a(torch.from_numpy(y[:, y0:y1, x0:x1])[None].to(self.device))[0].double().cpu().numpy()

        return run_tiled(h_a, hy, wy, scale=Fraction(1, 4), tile=tile, halo=8, align=4, out=z)

    # ---- the exact h_s, in tiles (both sides) -----------------------------------------
    def each_hyper_tile(self, z_sym: np.ndarray, tile: int, put) -> None:
        z = self.z.fixed_point(z_sym)
        _, hz, wz = z.shape

        def hyper_synthesis(y0, y1, x0, x1):
            return torch.stack(self.h_s(torch.from_numpy(z[:, y0:y1, x0:x1])))

        run_tiled(hyper_synthesis, hz, wz, scale=4, tile=tile, halo=2, put=put)

    def hyper_params(self, z_sym: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
        """The exact h_s's (mean, log2 scale) of every latent, un-gained fixed point
        (int64 arrays), in tiles (integers: identical to one whole run)."""
        _, hz, wz = z_sym.shape
        out = np.empty((2, self.channels, 4 * hz, 4 * wz), dtype=np.int64)

        def put(oy0, oy1, ox0, ox1, part):
            out[:, :, oy0:oy1, ox0:ox1] = part.cpu().numpy()

        self.each_hyper_tile(z_sym, tile, put)
        return out[0], out[1]

    def params(self, z_sym: np.ndarray, quality: float, tile: int):
        """(scale index uint8, gained mean fixed point, log2 gains) of every latent from
        h_s alone, in tiles (the plain hyperprior's parameters)."""
        return self.y.gaussian.latent_params(HyperOutput(self, z_sym, tile), quality)

    # ---- encode ------------------------------------------------------------------
    def analyse(self, z: np.ndarray, tile: int, cache: bool = True):
        """Float z -> (symbols, HYPER bytes, :class:`HyperOutput`); the output is computed
        now when ``cache`` (or when the y codec needs it whole)."""
        z_sym = self.z.quantize(z)
        out = HyperOutput(self, z_sym, tile)
        if cache or self.y.needs_whole_hyper:
            out.whole()
        return z_sym, self.z.encode(z_sym), out

    def encode(self, y: np.ndarray, hyper: HyperOutput, quality: float) -> tuple[bytes, np.ndarray]:
        """Float y -> (LATENT bytes, y symbols) under ``hyper`` (from :meth:`analyse`)."""
        return self.y.encode(y, hyper, quality)

    # ---- decode ------------------------------------------------------------------
    def decode(self, z_bytes: bytes, y_bytes: bytes, z_shape, quality: float, tile: int):
        """(z symbols, the y codec's decoded tuple) of one file's two chunks."""
        z_sym = self.z.decode(z_bytes, z_shape)
        return z_sym, self.y.decode(y_bytes, HyperOutput(self, z_sym, tile), quality)
