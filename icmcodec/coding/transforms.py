"""The shared base of the codecs whose float transforms run in tiles around a hyperprior.

:class:`TransformCodec` is a mixin for a method's codec (``class MyCodec(TransformCodec,
Codec)``): it loads the model file's float transforms (``float.g_a.*``, ``float.g_s.*``,
``float.h_a.*``) into the modules the method builds (:meth:`TransformCodec._float_transforms`),
runs g_a and g_s as layer stacks in tiles (:mod:`icmcodec.tiling`), and codes y through
a :class:`~icmcodec.coding.hyperprior.Hyperprior` whose y codec the method picks
(:meth:`TransformCodec._y_codec`: Gaussian-conditional by default, channel slices of
checkerboards for the context model). Encode is ``analyse`` once and ``code`` per
quality; decode is :meth:`TransformCodec.decode_symbols` then the tiled synthesis.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

import bitstream
from bitstream import ChunkType, coded_size
from icmcodec.coding.factorized import FactorizedZ
from icmcodec.coding.gaussian import GaussianConditional
from icmcodec.coding.hyperprior import CACHE_HYPER, ExactHyperSynthesis, Hyperprior, HyperOutput
from icmcodec.exact import ACT_FRAC
from icmcodec.layers.transforms import build_transforms
from icmcodec.tiling import run_stack_tiled

PAD = 64  # g_a down-samples by 16, h_a by 4 more: bitstream.PAD_UNIT


def padded_size(h: int, w: int) -> tuple[int, int]:
    return coded_size(h, w)


@dataclass(frozen=True)
class Tiling:
    """Tile sizes of the four transforms (see :mod:`icmcodec.tiling`), in each one's
    input units. g_a and g_s run as layer stacks (:func:`icmcodec.tiling.run_stack_tiled`):
    each tile reads exactly the receptive field of what it owns, computed from the
    layers' geometry, and crops between layers, so the costly full-resolution layers
    compute little more than the picture. h_a (7 latents of reach) and the exact h_s
    (under 2 hyper-latents) run with fixed halos. The sizes were measured on a
    3840x2160 picture (``benchmarks/hostile.py``): peak memory per tile against
    overlap. Pictures up to 1024 pixels a side (every validation photo) run in one
    tile, as before tiling."""

    analysis: int = 1024  # pixels
    hyper_analysis: int = 256  # latents (4096 pixels); halo 8
    hyper_synthesis: int = 40  # hyper-latents (2560 pixels); halo 2
    synthesis: int = 48  # latents (768 pixels)
    analysis_margin: int = 0  # pixels of input beyond g_a's reach (a hook that reads the input tile)
    synthesis_margin: int = 0  # latents, the same for g_s
    analysis_align: int = 16  # pixels: tile corners (and input spans) on this grid


@dataclass
class Analysis:
    """The quality-independent part of an encode (see ``TransformCodec.analyse``)."""

    coded_size: tuple[int, int]
    y: np.ndarray  # M x h x w float32
    z_sym: np.ndarray
    z_bytes: bytes
    hyper: tuple | None  # (mean, log2 scale) int64 fixed point, or None: recompute


class TransformCodec:
    """Mixin: float g_a / g_s / h_a in tiles + a hyperprior (see the module docstring).

    A method's codec sets ``config_cls`` (its config, read from ``config["arch"]``) and
    ``encoded`` (the class ``code`` returns, :class:`icmcodec.methods.base.Encoded`)."""

    config_cls = None
    encoded = None
    default_tiling = Tiling()

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu",
                 tiling: Tiling | None = None):
        super().__init__(config, model_hash)
        self.tiling = tiling or self.default_tiling
        self.arch = self.config_cls.from_dict(config["arch"])
        self.levels = self.arch.levels
        self.device = torch.device(device)
        net = torch.nn.ModuleDict(dict(zip(("g_a", "g_s", "h_a"), self._float_transforms())))
        # kernels may be stored in float16 (export --compact); the transforms run in float32
        float_state = {k[len("float."):]: torch.from_numpy(np.asarray(v, dtype=np.float32))
                       for k, v in state.items() if k.startswith("float.")}
        try:
            net.load_state_dict(float_state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"model file does not match its config: {' '.join(str(e).split())[:300]}") from None
        net.eval().to(self.device)
        self.g_a, self.g_s, self.h_a = net["g_a"], net["g_s"], net["h_a"]
        self.hyperprior = Hyperprior(self.h_a, ExactHyperSynthesis.from_state(state, self.device),
                                     FactorizedZ.from_state(state), self._y_codec(state), self.arch.M, self.device)

    # ---- what a method chooses ------------------------------------------------------
    def _float_transforms(self):
        """(g_a, g_s, h_a) modules the float state loads into (the hyperprior's layout;
        methods with other layouts override this)."""
        return build_transforms(self.arch)

    def _y_codec(self, state: dict[str, np.ndarray]):
        """The hyperprior's y codec (Gaussian-conditional on h_s alone here)."""
        return GaussianConditional.from_state(state)

    # ---- the parts, under their old names -----------------------------------------------
    h_s = property(lambda self: self.hyperprior.h_s)
    z_coder = property(lambda self: self.hyperprior.z.coder)
    y_coder = property(lambda self: self.hyperprior.y.gaussian.coder)
    z_median_fp = property(lambda self: self.hyperprior.z.median_fp)
    log2_gain_fp = property(lambda self: self.hyperprior.y.gaussian.log2_gain_fp)
    pow2 = property(lambda self: self.hyperprior.y.gaussian.pow2)

    def _params(self, z_sym: np.ndarray, quality: float):
        """(scale index uint8, gained mean fixed-point, log2 gains) for every latent from
        h_s alone, by the exact h_s run in tiles (integers: identical to one whole run)."""
        return self.hyperprior.params(z_sym, quality, self.tiling.hyper_synthesis)

    def _hyper_params(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact h_s's (mean, log2 scale) of every latent, un-gained fixed point."""
        return self.hyperprior.hyper_params(z_sym, self.tiling.hyper_synthesis)

    def _z_index(self, shape) -> np.ndarray:
        return self.hyperprior.z.index(shape)

    # ---- the float transforms, in tiles ------------------------------------------
    def _analysis_layers(self):
        """The g_a layers the tiled analysis runs, and a hook called with each input tile
        and its origin before the layers run (None here; prompted methods use it)."""
        return list(self.g_a), None

    def _synthesis_layers(self):
        return list(self.g_s)

    def _run_g_a(self, x: torch.Tensor) -> torch.Tensor:
        """g_a on a whole batch (no tiles)."""
        return self.g_a(x)

    @torch.no_grad()
    def _analysis(self, rgb_padded: np.ndarray) -> np.ndarray:
        """Padded H x W x 3 uint8 -> y, M x H/16 x W/16 float32 (g_a in tiles)."""
        ph, pw = rgb_padded.shape[:2]
        y = np.empty((self.arch.M, ph // 16, pw // 16), dtype=np.float32)
        layers, on_tile = self._analysis_layers()

        def tile(y0, y1, x0, x1):
            x = torch.from_numpy(np.ascontiguousarray(rgb_padded[y0:y1, x0:x1])).permute(2, 0, 1)[None]
            x = x.float().div(255).to(self.device)
            if on_tile is not None:
                on_tile(x, y0, x0)
            return x

        def put(oy0, oy1, ox0, ox1, part):
            y[:, oy0:oy1, ox0:ox1] = part[0].cpu().numpy()

        run_stack_tiled(layers, tile, ph, pw, scale=Fraction(1, 16), tile=self.tiling.analysis,
                        margin=self.tiling.analysis_margin, align=self.tiling.analysis_align, put=put)
        return y

    def _hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        """y -> z, Nz x H/64 x W/64 float64 (h_a in tiles)."""
        return self.hyperprior.analysis(y, self.tiling.hyper_analysis)

    @torch.no_grad()
    def _synthesis(self, y_sym, mean_g_fp, lg, size) -> np.ndarray:
        """Symbols -> H x W x 3 uint8 picture (g_s in tiles, cropped to ``size``)."""
        h, w = size
        gain = np.exp2(lg / (1 << ACT_FRAC))[:, None, None]
        rgb = np.empty((h, w, 3), dtype=np.uint8)

        def tile(y0, y1, x0, x1):
            y_hat = (y_sym[:, y0:y1, x0:x1] + mean_g_fp[:, y0:y1, x0:x1] / (1 << ACT_FRAC)) / gain
            return torch.from_numpy(y_hat.astype(np.float32))[None].to(self.device)

        def put(oy0, oy1, ox0, ox1, part):
            if oy0 < h and ox0 < w:
                # a forged file can drive the float synthesis to inf/NaN: keep the picture defined
                x_hat = torch.nan_to_num(part[0, :, :h - oy0, :w - ox0], nan=0.0).clamp(0, 1)
                rgb[oy0:min(oy1, h), ox0:min(ox1, w)] = (x_hat * 255).round().byte().permute(1, 2, 0).cpu().numpy()

        _, hy, wy = y_sym.shape
        run_stack_tiled(self._synthesis_layers(), tile, hy, wy, scale=16, tile=self.tiling.synthesis,
                        margin=self.tiling.synthesis_margin, put=put)
        return rgb

    # ---- encode: the analysis once, then the coding for any quality ------------------
    @torch.no_grad()
    def analyse(self, rgb: np.ndarray) -> Analysis:
        """Everything of an encode that does not depend on the quality: the transforms,
        z and its bytes, and (for latents up to ``CACHE_HYPER`` values, or always when the
        y codec needs it whole) the exact hyper synthesis's output. Rate control codes one
        analysis at many qualities."""
        h, w = rgb.shape[:2]
        ph, pw = padded_size(h, w)
        # edge replication: the padding the decoder crops away again
        y = self._analysis(np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge"))
        return self._finish_analysis((ph, pw), y, self._hyper_analysis(y))

    def _finish_analysis(self, coded: tuple[int, int], y: np.ndarray, z: np.ndarray) -> Analysis:
        z_sym, z_bytes, hyper = self.hyperprior.analyse(z, self.tiling.hyper_synthesis, cache=y.size <= CACHE_HYPER)
        return Analysis(coded, y, z_sym, z_bytes, hyper.cached)

    @torch.no_grad()
    def analyse_batch(self, rgbs: list[np.ndarray]) -> list[Analysis]:
        """:meth:`analyse` for several pictures, running g_a and h_a once on a batch of
        those with the same coded size that fit one tile (a GPU's way to many pictures
        a second). Batched float kernels may round a latent differently from a single
        run: the files are valid either way, but a batch of other pictures may give
        other bytes, so the CLI batches only on a GPU."""
        out: list = [None] * len(rgbs)
        groups: dict[tuple, list[int]] = {}
        for i, rgb in enumerate(rgbs):
            coded = padded_size(*rgb.shape[:2])
            if max(coded) <= self.tiling.analysis:
                groups.setdefault(coded, []).append(i)
            else:
                out[i] = self.analyse(rgb)
        for (ph, pw), idx in groups.items():
            x = np.stack([np.pad(rgbs[i], ((0, ph - rgbs[i].shape[0]), (0, pw - rgbs[i].shape[1]), (0, 0)),
                                 mode="edge") for i in idx])
            xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).to(self.device)
            y = self._run_g_a(xt)
            z = self.h_a(y).double().cpu().numpy()
            y = y.cpu().numpy()
            for j, i in enumerate(idx):
                out[i] = self._finish_analysis((ph, pw), y[j], z[j])
        return out

    @torch.no_grad()
    def code(self, an: Analysis, quality: float):
        """The chunks of an analysed picture at one quality (an ``encoded``)."""
        hyper = HyperOutput(self.hyperprior, an.z_sym, self.tiling.hyper_synthesis, an.hyper)
        y_bytes, y_sym = self.hyperprior.encode(an.y, hyper, quality)
        if an.hyper is None and hyper.cached is not None:
            an.hyper = hyper.cached  # a y codec that needs it whole computed it: keep it
        chunks = [bitstream.Chunk(ChunkType.HYPER, an.z_bytes), bitstream.Chunk(ChunkType.LATENT, y_bytes)]
        return self.encoded(an.coded_size, chunks, {"z": an.z_sym, "y": y_sym})

    def encode(self, rgb: np.ndarray, quality: float) -> dict:
        """H x W x 3 uint8 -> dict(coded size, chunks z/y, symbols for tests)."""
        enc = self.code(self.analyse(rgb), quality)
        return {"coded_size": enc.coded_size, "z": enc.chunks[0].data, "y": enc.chunks[1].data,
                "z_sym": enc.symbols["z"], "y_sym": enc.symbols["y"]}

    # ---- decode -----------------------------------------------------------------------
    def decode_symbols(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float):
        """(z symbols, then the y codec's decoded tuple: y symbols and, for the Gaussian
        y, the gained means and log2 gains; for channel slices y_hat and log2 gains)."""
        ph, pw = coded_size
        if ph % PAD or pw % PAD:
            raise ValueError("coded size is not a multiple of 64")
        z_sym, decoded = self.hyperprior.decode(z_bytes, y_bytes, (self.arch.Nz, ph // PAD, pw // PAD), quality,
                                                self.tiling.hyper_synthesis)
        return (z_sym, *decoded)

    def decode_chunks(self, header: bitstream.Header, chunks: list[bitstream.Chunk]) -> np.ndarray:
        z, y = self.payloads(chunks)
        return self.decode(z, y, (header.coded_height, header.coded_width), (header.height, header.width),
                           header.quality)

    @torch.no_grad()
    def decode(self, z_bytes: bytes, y_bytes: bytes, coded_size, size, quality: float) -> np.ndarray:
        """Chunks -> H x W x 3 uint8 reconstruction."""
        decoded = self.decode_symbols(z_bytes, y_bytes, coded_size, quality)[1:]
        return self._synthesis(*self.hyperprior.y.reconstruction(decoded), size)
