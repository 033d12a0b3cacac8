"""The base codec at coding time: image <-> (header fields, chunks) with real bytes.

``HyperpriorCodec`` is built from an *exported* state (see :mod:`icmcodec.zoo.export`):
float weights for the transforms, integer weights for the exact hyper synthesis,
baked integer tables for z and y, integer log2 gains and medians. Coding follows
:mod:`icmcodec.exact`: every number the range coder sees comes from integers, so a
file encoded anywhere decodes to the same symbols anywhere.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from icmcodec.entropy import IntTables, TableCoder
from icmcodec.exact import ACT_FRAC, EXTRAPOLATE_LEVELS, ExactHyperSynthesis, entropy_params, quality_log2_gain
from icmcodec.transforms import HyperpriorConfig, build_transforms

PAD = 64  # g_a down-samples by 16, h_a by 4 more


class ModelMismatchError(ValueError):
    """A file or adapter was made for another model than the one loaded."""


def padded_size(h: int, w: int) -> tuple[int, int]:
    return h + (-h) % PAD, w + (-w) % PAD


class HyperpriorCodec:
    """Inference-time gained mean-scale hyperprior with an exact entropy-parameter path."""

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu"):
        self.config = config
        self.arch = HyperpriorConfig.from_dict(config["arch"])
        self.model_hash = model_hash
        self.device = torch.device(device)
        net = torch.nn.ModuleDict(dict(zip(("g_a", "g_s", "h_a"), build_transforms(self.arch))))
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

    @property
    def quality_range(self) -> tuple[float, float]:
        """Trained levels span 0..levels-1; a model's config may extend the low end
        (extrapolated gains, see ``exact.quality_log2_gain``)."""
        top = float(self.arch.levels - 1)
        lo, hi = self.config.get("quality_range", (0.0, top))
        return (max(float(lo), -float(EXTRAPOLATE_LEVELS)), min(float(hi), top))

    @property
    def default_quality(self) -> float:
        lo, hi = self.quality_range
        return float(self.config.get("default_quality", (lo + hi) / 2))

    # ---- the exact path, shared by encoder and decoder ---------------------------
    def _params(self, z_sym: np.ndarray, quality: float):
        z_fp = torch.from_numpy(z_sym * (1 << ACT_FRAC) + self.z_median_fp[:, None, None])
        mean_fp, ls_fp = self.h_s(z_fp)
        lg = quality_log2_gain(self.log2_gain_fp, quality)
        idx, mean_g_fp = entropy_params(mean_fp, ls_fp, lg, self.pow2)
        return idx, mean_g_fp, lg

    def _z_index(self, shape) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    # ---- encode / decode ----------------------------------------------------------
    @torch.no_grad()
    def encode(self, rgb: np.ndarray, quality: float) -> dict:
        """H x W x 3 uint8 -> dict(coded size, chunks z/y, symbols for tests)."""
        h, w = rgb.shape[:2]
        ph, pw = padded_size(h, w)
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div(255).to(self.device)
        x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        y = self.g_a(x)
        z = self.h_a(y)[0].double().cpu().numpy()
        z_sym = np.rint(z - self.z_median_fp[:, None, None] / (1 << ACT_FRAC)).astype(np.int64)
        idx, mean_g_fp, lg = self._params(z_sym, quality)
        gain = np.exp2(lg / (1 << ACT_FRAC))[:, None, None]
        yg = y[0].double().cpu().numpy() * gain
        y_sym = np.rint(yg - mean_g_fp / (1 << ACT_FRAC)).astype(np.int64)
        return {
            "coded_size": (ph, pw),
            "z": self.z_coder.encode(z_sym, self._z_index(z_sym.shape)),
            "y": self.y_coder.encode(y_sym, idx),
            "z_sym": z_sym,
            "y_sym": y_sym,
        }

    def decode_symbols(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float):
        ph, pw = coded_size
        if ph % PAD or pw % PAD:
            raise ValueError("coded size is not a multiple of 64")
        z_shape = (self.arch.Nz, ph // PAD, pw // PAD)
        z_sym = self.z_coder.decode(z_bytes, self._z_index(z_shape)).reshape(z_shape)
        idx, mean_g_fp, lg = self._params(z_sym, quality)
        y_sym = self.y_coder.decode(y_bytes, idx).reshape(idx.shape)
        return z_sym, y_sym, mean_g_fp, lg

    @torch.no_grad()
    def decode(self, z_bytes: bytes, y_bytes: bytes, coded_size, size, quality: float) -> np.ndarray:
        """Chunks -> H x W x 3 uint8 reconstruction."""
        _, y_sym, mean_g_fp, lg = self.decode_symbols(z_bytes, y_bytes, coded_size, quality)
        gain = np.exp2(lg / (1 << ACT_FRAC))[:, None, None]
        y_hat = (y_sym + mean_g_fp / (1 << ACT_FRAC)) / gain
        y_t = torch.from_numpy(y_hat.astype(np.float32))[None].to(self.device)
        x_hat = self.g_s(y_t)[0, :, : size[0], : size[1]].clamp(0, 1)
        return (x_hat * 255).round().byte().permute(1, 2, 0).cpu().numpy()
