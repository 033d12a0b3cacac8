"""DoRA-ICM at coding time: picture -> task features and coarse prediction -> a file ->
the task's output, with no task network at the decoder.

One model folder per task (``dora-lite0-semseg``): the per-task DoRA adapters of the
frozen backbone (``adapter.*``), the preliminary decoder and h_a (``float.*``), the exact
entropy model (``exact.*``, ``tables.*``: the hyperprior's h_s and z, the channel slices'
context nets) and the decoder (``float.decoder.*``). The backbone itself is not in the
file: the codec builds it from the source its config names (the registry package's
ImageNet weights) and refuses a backbone whose tensors hash differently from the one the
set was trained on. Only encoding needs it.

Chunks: HYPER (z), then two LATENT chunks, the checkerboard's anchors of every slice and
the rest (:class:`~icmcodec.coding.slices.PassChunkSlices`); every entropy parameter
comes from the exact integer twins and decoded symbols. Large pictures run the float
encoder in tiles of ``ENCODER_TILE`` pixels (halo ``ENCODER_HALO``) and the decoder in
tiles of ``DECODER_TILE`` latents (halo ``DECODER_HALO``); a picture within one tile runs
whole.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

import bitstream
from bitstream import ChunkType, coded_size
from icmcodec.coding.factorized import FactorizedZ
from icmcodec.coding.hyperprior import CACHE_HYPER, ExactHyperSynthesis, Hyperprior, HyperOutput
from icmcodec.coding.slices import PassChunkSlices, slice_bounds
from icmcodec.coding.transforms import PAD, Analysis
from icmcodec.exact import ACT_FRAC
from icmcodec.methods.base import Codec, Encoded
from icmcodec.methods.dora_icm import dora
from icmcodec.methods.dora_icm.decoder import LowComplexityDecoder
from icmcodec.methods.dora_icm.model import DoraIcmConfig, PreliminaryDecoder
from icmcodec.tiling import run_tiled
from icmcodec.zoo import ModelNotFoundError

ENCODER_TILE, ENCODER_HALO = 1024, 64  # pixels
DECODER_TILE, DECODER_HALO = 48, 4  # latents (768 and 64 pixels)


class BackboneError(ModelNotFoundError):
    """The backbone a set needs is missing or is not the one it was trained on (a model
    the encoder needs that is not installed: the pipeline reports it in one line)."""


def backbone_hash(net: torch.nn.Module) -> str:
    """First 16 bytes (hex) of the SHA-256 over the backbone's tensors (name, float32
    bytes, sorted by name): which weights a set's adapters were trained on."""
    import hashlib

    h = hashlib.sha256()
    # the frozen tensors under their own names, with or without DoRA wrappers around them
    frozen = {k.replace(".base_layer.", "."): v for k, v in net.state_dict().items() if ".lora_" not in k}
    for k, v in sorted(frozen.items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:32]


def seeded_backbone(cfg: DoraIcmConfig, seed: int) -> torch.nn.Module:
    """A backbone with every tensor drawn from numpy's PCG64 (tiny test sets: the same
    weights on every machine, unlike torch's initialisers)."""
    from icmcodec.methods.dora_icm.model import build_backbone

    net = build_backbone(cfg, None)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in net.state_dict().items():
            if name.endswith("running_var"):
                p.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, p.shape)))
            elif p.is_floating_point():
                fan = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.from_numpy(rng.normal(0, 1 / np.sqrt(fan), p.shape) if p.dim() > 1
                                         else rng.uniform(-0.1, 0.1, p.shape)))
    return net


def load_backbone(cfg: DoraIcmConfig, source: dict) -> torch.nn.Module:
    """The frozen backbone a set's config names (``{"name", "weights", "hash"}``), checked."""
    from icmcodec.methods.dora_icm.model import build_backbone
    from icmcodec.tasks.backbone import BackboneError as TimmBackboneError

    weights = source.get("weights", "registry")
    try:
        net = (seeded_backbone(cfg, int(weights.split(":", 1)[1])) if str(weights).startswith("seeded:")
               else build_backbone(cfg, weights))
    except TimmBackboneError as e:
        raise BackboneError(str(e)) from None
    got = backbone_hash(net)
    if got != source.get("hash"):
        raise BackboneError(f"this set's adapters were trained on backbone {str(source.get('hash'))[:12]} "
                            f"({cfg.backbone}); the installed one is {got[:12]}")
    return net


class DoraIcmCodec(Codec):
    """DoRA-ICM's encoder (backbone + merged DoRA + preliminary decoder), exact entropy
    model and low-complexity decoder (see the module docstring)."""

    method = "dora-icm"
    produces = "task"
    chunk_layout = (ChunkType.HYPER, ChunkType.LATENT, ChunkType.LATENT)

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu"):
        super().__init__(config, model_hash)
        from icmcodec.tasks.registry import task as task_spec

        self.arch = DoraIcmConfig.from_dict(config["arch"])
        self.levels = self.arch.levels
        self.device = torch.device(device)
        self.task = config["task"]
        self.spec = task_spec(self.task)
        self.labels = tuple(config.get("labels") or self.spec.labels or ())
        ent = self.arch.entropy_config()
        from icmcodec.layers.transforms import hyper_analysis

        self.h_a = hyper_analysis(ent)
        self.prelim = PreliminaryDecoder(self.arch.backbone_channels, self.arch.feat, self.arch.classes)
        self.decoder = LowComplexityDecoder(self.arch.M, self.arch.classes, self.arch.dims, self.arch.heads,
                                            self.arch.depth)
        parts = {"h_a": self.h_a, "prelim": self.prelim, "decoder": self.decoder}
        for name, module in parts.items():
            prefix = f"float.{name}."
            sub = {k[len(prefix):]: torch.from_numpy(np.asarray(v, dtype=np.float32))
                   for k, v in state.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(sub, strict=True)
            except RuntimeError as e:
                raise ValueError(f"model file does not match its config: {' '.join(str(e).split())[:300]}") from None
            module.eval().requires_grad_(False).to(self.device)
        self.adapters = {k[len("adapter."):]: torch.from_numpy(np.asarray(v, dtype=np.float32))
                         for k, v in state.items() if k.startswith("adapter.")}
        y = PassChunkSlices.from_state(state, slice_bounds(ent.slices), ent.hidden, self.device)
        self.hyperprior = Hyperprior(self.h_a, ExactHyperSynthesis.from_state(state, self.device),
                                     FactorizedZ.from_state(state), y, self.arch.M, self.device)
        self._backbone = None
        self.mean = self.std = None

    # ---- hooks -------------------------------------------------------------------------
    def can_code(self, task: str) -> bool:
        return task == self.task

    def write(self, output: np.ndarray) -> dict[str, bytes]:
        """The task's output files; a JSON output names the set that made it."""
        from icmcodec.tasks.writers import with_sources

        return with_sources(self.spec.write(output, self.labels),
                            {"model": {"name": self.config.get("name", ""), "hash": self.model_hash.hex()}})

    # ---- encoder -----------------------------------------------------------------------
    def encoder(self) -> torch.nn.Module:
        """The backbone with this set's adapters merged (built on first use: decoding
        never needs it)."""
        if self._backbone is None:
            from icmcodec.tasks.backbone import input_stats

            net = load_backbone(self.arch, self.config.get("backbone", {}))
            if self.adapters:
                dora.inject(net, dora.targets(net, self.arch.targets, self.arch.adapt_from), self.arch.rank,
                            self.arch.alpha, self.arch.dora)
                missing, unexpected = net.load_state_dict(self.adapters, strict=False)
                if unexpected or any(".lora_" in k for k in missing):
                    raise ValueError("the set's adapters do not fit the backbone's layers")
                dora.merge(net)
            self._backbone = net.eval().to(self.device)
            mean, std = input_stats(self.arch.backbone)
            self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
            self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        return self._backbone

    @torch.no_grad()
    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder()((x - self.mean) / self.std)[-1]
        return self.prelim(f)[0]

    @torch.no_grad()
    def analyse(self, rgb: np.ndarray) -> Analysis:
        h, w = rgb.shape[:2]
        ph, pw = coded_size(h, w)
        padded = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        self.encoder()
        y = np.empty((self.arch.M, ph // 16, pw // 16), dtype=np.float32)

        def tile(y0, y1, x0, x1):
            x = torch.from_numpy(np.ascontiguousarray(padded[y0:y1, x0:x1])).permute(2, 0, 1)[None]
            return self._latent(x.float().div(255).to(self.device))[0].cpu().numpy()

        run_tiled(tile, ph, pw, scale=Fraction(1, 16), tile=ENCODER_TILE, halo=ENCODER_HALO, align=PAD, out=y)
        z = self.hyperprior.analysis(y, 256)
        z_sym, z_bytes, hyper = self.hyperprior.analyse(z, 40, cache=y.size <= CACHE_HYPER)
        return Analysis((ph, pw), y, z_sym, z_bytes, hyper.cached)

    @torch.no_grad()
    def code(self, an: Analysis, quality: float) -> Encoded:
        hyper = HyperOutput(self.hyperprior, an.z_sym, 40, an.hyper)
        (anchors, rest), y_sym = self.hyperprior.encode(an.y, hyper, quality)
        if an.hyper is None:
            an.hyper = hyper.cached
        chunks = [bitstream.Chunk(ChunkType.HYPER, an.z_bytes), bitstream.Chunk(ChunkType.LATENT, anchors),
                  bitstream.Chunk(ChunkType.LATENT, rest)]
        return Encoded(an.coded_size, chunks, {"z": an.z_sym, "y": y_sym})

    # ---- decoder -----------------------------------------------------------------------
    def decode_symbols(self, chunks: list[bitstream.Chunk], coded, quality: float):
        """(z symbols, y symbols, y_hat un-gained fixed point, log2 gains)."""
        z, anchors, rest = self.payloads(chunks)
        ph, pw = coded
        if ph % PAD or pw % PAD:
            raise ValueError("coded size is not a multiple of 64")
        z_sym, decoded = self.hyperprior.decode(z, (anchors, rest), (self.arch.Nz, ph // PAD, pw // PAD), quality, 40)
        return (z_sym, *decoded)

    @torch.no_grad()
    def logits(self, y_hat_fp: np.ndarray, size) -> np.ndarray:
        """The decoder on the decoded latent (in tiles), cropped to the picture."""
        h, w = size
        y_hat = torch.from_numpy((y_hat_fp / (1 << ACT_FRAC)).astype(np.float32))
        _, hy, wy = y_hat.shape
        out = np.empty((self.arch.classes, min(16 * hy, h), min(16 * wy, w)), dtype=np.float32)

        def tile(y0, y1, x0, x1):
            part = y_hat[None, :, y0:y1, x0:x1].to(self.device)
            lg = self.decoder(part, (16 * (y1 - y0), 16 * (x1 - x0)))[0]
            return torch.nan_to_num(lg, nan=0.0, posinf=1e4, neginf=-1e4).cpu().numpy()

        def put(oy0, oy1, ox0, ox1, part):
            if oy0 < h and ox0 < w:
                out[:, oy0:min(oy1, h), ox0:min(ox1, w)] = part[:, :h - oy0, :w - ox0]

        # tiles keep the decoder's key grid whole: spans of even latents
        run_tiled(tile, hy, wy, scale=16, tile=DECODER_TILE, halo=DECODER_HALO, align=4, put=put)
        return out

    def decode_chunks(self, header: bitstream.Header, chunks: list[bitstream.Chunk]) -> np.ndarray:
        _, _, y_hat_fp, _ = self.decode_symbols(chunks, (header.coded_height, header.coded_width), header.quality)
        return self.spec.postprocess(self.logits(y_hat_fp, (header.height, header.width)))
