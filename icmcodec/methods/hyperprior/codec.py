"""The base codec at coding time: image <-> (header fields, chunks) with real bytes.

``HyperpriorCodec`` is built from an *exported* state (see :mod:`icmcodec.methods.hyperprior.export`):
float weights for the transforms, integer weights for the exact hyper synthesis,
baked integer tables for z and y, integer log2 gains and medians. Coding follows
:mod:`icmcodec.exact`: every number the range coder sees comes from integers, so a
file encoded anywhere decodes to the same symbols anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

import bitstream
from bitstream import ChunkType, coded_size
from icmcodec.entropy import IntTables, TableCoder
from icmcodec.exact import ACT_FRAC, ACT_LIMIT, entropy_params, quality_log2_gain
from icmcodec.methods.base import Codec, Encoded
from icmcodec.methods.hyperprior.exact import ExactHyperSynthesis
from icmcodec.tiling import run_stack_tiled, run_tiled
from icmcodec.methods.hyperprior.transforms import HyperpriorConfig, build_transforms

PAD = 64  # g_a down-samples by 16, h_a by 4 more: bitstream.PAD_UNIT
# z symbols beyond this saturate the exact path's activation limit anyway; clamping them
# first keeps ``z * 2**ACT_FRAC`` inside int64 for any file (the same rule on both sides)
Z_SYMBOL_LIMIT = 1 << 20
# an analysis keeps the exact hyper output (two int64 arrays) for latents up to this
# many values (6.3 M: a 3840x2160 picture); above it each quality recomputes it in tiles
CACHE_HYPER = 1 << 23


@dataclass
class Analysis:
    """The quality-independent part of an encode (see ``HyperpriorCodec.analyse``)."""

    coded_size: tuple[int, int]
    y: np.ndarray  # M x h x w float32
    z_sym: np.ndarray
    z_bytes: bytes
    hyper: tuple | None  # (mean, log2 scale) int64 fixed point, or None: recompute


class ModelMismatchError(ValueError):
    """A file or adapter was made for another model than the one loaded."""


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


class HyperpriorCodec(Codec):
    """Inference-time gained mean-scale hyperprior with an exact entropy-parameter path."""

    method = "hyperprior"
    produces = "picture"
    config_cls = HyperpriorConfig

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu",
                 tiling: Tiling | None = None):
        super().__init__(config, model_hash)
        self.tiling = tiling or Tiling()
        self.arch = self.config_cls.from_dict(config["arch"])
        self.levels = self.arch.levels
        self.device = torch.device(device)
        net = torch.nn.ModuleDict(dict(zip(("g_a", "g_s", "h_a"), self._float_transforms())))
        # kernels may be stored in float16 (export --compact); the transforms run in float32
        float_state = {k[len("float.") :]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items() if k.startswith("float.")}
        try:
            net.load_state_dict(float_state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"model file does not match its config: {' '.join(str(e).split())[:300]}") from None
        net.eval().to(self.device)
        self.g_a, self.g_s, self.h_a = net["g_a"], net["g_s"], net["h_a"]
        self.h_s = ExactHyperSynthesis(
            {k[len("exact.h_s.") :]: v for k, v in state.items() if k.startswith("exact.h_s.")}, self.device
        )
        self.z_median_fp = np.asarray(state["exact.z_median_fp"], dtype=np.int64)
        self.log2_gain_fp = np.asarray(state["exact.log2_gain_fp"], dtype=np.int64)
        self.pow2 = np.asarray(state["exact.pow2"], dtype=np.int64)
        self.z_coder = TableCoder(IntTables(state["tables.z.counts"], state["tables.z.offsets"], state["tables.z.lengths"]))
        self.y_coder = TableCoder(IntTables(state["tables.y.counts"], state["tables.y.offsets"], state["tables.y.lengths"]))

    # ---- the exact path, shared by encoder and decoder ---------------------------
    def _params(self, z_sym: np.ndarray, quality: float):
        """(scale index uint8, gained mean fixed-point, log2 gains) for every latent,
        by the exact h_s run in tiles (integers: identical to one whole run)."""
        lg = quality_log2_gain(self.log2_gain_fp, quality)
        z = np.clip(z_sym, -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        c, hz, wz = z.shape
        # gained means fit int32 unless a gain reaches 2**8 (|mean| <= ACT_LIMIT = 2**22)
        wide = (ACT_LIMIT << max(int(lg.max()) >> ACT_FRAC, 0) + 1) >= (1 << 31)
        idx = np.empty((self.arch.M, 4 * hz, 4 * wz), dtype=np.uint8)
        mean_g = np.empty(idx.shape, dtype=np.int64 if wide else np.int32)

        def hyper_synthesis(y0, y1, x0, x1):
            z_fp = torch.from_numpy(z[:, y0:y1, x0:x1] * (1 << ACT_FRAC) + self.z_median_fp[:, None, None])
            return torch.stack(self.h_s(z_fp))

        def put(oy0, oy1, ox0, ox1, part):
            i, m = entropy_params(part[0], part[1], lg, self.pow2)
            idx[:, oy0:oy1, ox0:ox1] = i
            mean_g[:, oy0:oy1, ox0:ox1] = m

        t = self.tiling.hyper_synthesis
        run_tiled(hyper_synthesis, hz, wz, scale=4, tile=t, halo=2, put=put)
        return idx, mean_g, lg

    def _hyper_params(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact h_s's (mean, log2 scale) of every latent, un-gained fixed point
        (int64 arrays), run in tiles like :meth:`_params`."""
        z = np.clip(z_sym, -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        c, hz, wz = z.shape
        out = np.empty((2, self.arch.M, 4 * hz, 4 * wz), dtype=np.int64)

        def hyper_synthesis(y0, y1, x0, x1):
            z_fp = torch.from_numpy(z[:, y0:y1, x0:x1] * (1 << ACT_FRAC) + self.z_median_fp[:, None, None])
            return torch.stack(self.h_s(z_fp)).cpu().numpy()

        return tuple(run_tiled(hyper_synthesis, hz, wz, scale=4, tile=self.tiling.hyper_synthesis, halo=2, out=out))

    def _z_index(self, shape) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    # ---- the float transforms, in tiles ------------------------------------------
    def _float_transforms(self):
        """(g_a, g_s, h_a) modules the float state loads into (methods with other
        layouts override this)."""
        return build_transforms(self.arch)

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

    @torch.no_grad()
    def _hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        """y -> z, Nz x H/64 x W/64 float64 (h_a in tiles)."""
        _, hy, wy = y.shape
        z = np.empty((self.arch.Nz, hy // 4, wy // 4), dtype=np.float64)

        def h_a(y0, y1, x0, x1):
            return self.h_a(torch.from_numpy(y[:, y0:y1, x0:x1])[None].to(self.device))[0].double().cpu().numpy()

        return run_tiled(h_a, hy, wy, scale=Fraction(1, 4), tile=self.tiling.hyper_analysis, halo=8, align=4, out=z)

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

    # ---- encode / decode ----------------------------------------------------------
    # ---- encode: the analysis once, then the coding for any quality ------------------
    @torch.no_grad()
    def analyse(self, rgb: np.ndarray) -> "Analysis":
        """Everything of an encode that does not depend on the quality: the transforms,
        z and its bytes, and (for latents up to ``CACHE_HYPER`` values) the exact hyper
        synthesis's output. Rate control codes one analysis at many qualities."""
        h, w = rgb.shape[:2]
        ph, pw = padded_size(h, w)
        # edge replication: the padding the decoder crops away again
        y = self._analysis(np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge"))
        return self._finish_analysis((ph, pw), y, self._hyper_analysis(y))

    def _finish_analysis(self, coded: tuple[int, int], y: np.ndarray, z: np.ndarray) -> "Analysis":
        z_sym = np.rint(z - self.z_median_fp[:, None, None] / (1 << ACT_FRAC)).astype(np.int64)
        hyper = self._hyper_params(z_sym) if y.size <= CACHE_HYPER else None
        return Analysis(coded, y, z_sym, self.z_coder.encode(z_sym, self._z_index(z_sym.shape)), hyper)

    @torch.no_grad()
    def analyse_batch(self, rgbs: list[np.ndarray]) -> list["Analysis"]:
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

    def _entropy_params(self, an: "Analysis", quality: float):
        if an.hyper is None:
            return self._params(an.z_sym, quality)
        lg = quality_log2_gain(self.log2_gain_fp, quality)
        idx, mean_g = entropy_params(an.hyper[0], an.hyper[1], lg, self.pow2)
        return idx.astype(np.uint8), mean_g, lg

    def code(self, an: "Analysis", quality: float) -> Encoded:
        """The chunks of an analysed picture at one quality."""
        idx, mean_g_fp, lg = self._entropy_params(an, quality)
        gain = np.exp2(lg / (1 << ACT_FRAC))
        y = an.y
        y_sym = np.empty(y.shape, dtype=np.int64)
        for c in range(y.shape[0]):  # a channel at a time: no float64 copy of the whole latent
            y_sym[c] = np.rint(y[c].astype(np.float64) * gain[c] - mean_g_fp[c] / (1 << ACT_FRAC))
        chunks = [bitstream.Chunk(ChunkType.HYPER, an.z_bytes),
                  bitstream.Chunk(ChunkType.LATENT, self.y_coder.encode(y_sym, idx))]
        return Encoded(an.coded_size, chunks, {"z": an.z_sym, "y": y_sym})

    def encode(self, rgb: np.ndarray, quality: float) -> dict:
        """H x W x 3 uint8 -> dict(coded size, chunks z/y, symbols for tests)."""
        enc = self.code(self.analyse(rgb), quality)
        return {"coded_size": enc.coded_size, "z": enc.chunks[0].data, "y": enc.chunks[1].data,
                "z_sym": enc.symbols["z"], "y_sym": enc.symbols["y"]}

    def decode_symbols(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float):
        ph, pw = coded_size
        if ph % PAD or pw % PAD:
            raise ValueError("coded size is not a multiple of 64")
        z_shape = (self.arch.Nz, ph // PAD, pw // PAD)
        z_sym = self.z_coder.decode(z_bytes, self._z_index(z_shape)).reshape(z_shape)
        idx, mean_g_fp, lg = self._params(z_sym, quality)
        y_sym = self.y_coder.decode(y_bytes, idx).reshape(idx.shape)
        return z_sym, y_sym, mean_g_fp, lg

    # ---- the codec interface (icmcodec.methods.base) ---------------------------------
    def decode_chunks(self, header: bitstream.Header, chunks: list[bitstream.Chunk]) -> np.ndarray:
        z, y = self.payloads(chunks)
        return self.decode(z, y, (header.coded_height, header.coded_width), (header.height, header.width),
                           header.quality)

    @torch.no_grad()
    def decode(self, z_bytes: bytes, y_bytes: bytes, coded_size, size, quality: float) -> np.ndarray:
        """Chunks -> H x W x 3 uint8 reconstruction."""
        _, y_sym, mean_g_fp, lg = self.decode_symbols(z_bytes, y_bytes, coded_size, quality)
        return self._synthesis(y_sym, mean_g_fp, lg, size)
