"""Prompt-ICM at coding time: a task's backbone features in, the task's output out.

Encoder: the picture (edge-padded to the coded size, as every method) goes through the
frozen extractor; the task's information selector turns stage 1-3 features into the
importance map ``m``, taken as relative importance (divided by its mean: the task decides
where the bits go, not how many); the quality scales it,
``m_q = clip(m / mean(m) * 2**((q - 4) / 2), 0, 1)``, and the feature codec codes stage 1
under ``m_q``. The stream is the hyperprior's (one HYPER and
one LATENT chunk, every entropy parameter from the exact integer h_s), so a Prompt-ICM
file decodes to the same symbols on every machine. The decoder needs no map: the
synthesis reads its condition from z.

Decoder: the symbols -> ``f_hat`` (the float synthesis) -> the task's prompts and head
on the task network's frozen later stages (:class:`~.model.TaskDecoder`) -> the task
output, written by the task's writer. The file holds features, not a picture:
``--task recon`` on it is an error.

The per-task adapter is a zoo folder of kind ``adapter`` (method ``prompt-icm``):
selector, prompts and head, naming the base model and the task network it was trained
with by hash.

Large pictures run in tiles (:class:`FeatureTiling`), so memory grows with the tile,
not the picture: the extractor and the selector over picture tiles with the selector's
receptive field around each, g_a over feature tiles, g_s over latent tiles (each with
a halo covering its reach, measured by back-propagating one output), and a dense
task's decoder over feature tiles with a wide context, post-processed per tile
(:mod:`icmcodec.tasks.tiled`). The map is made relative over the whole picture (its
mean is taken after the tiles). Pictures that fit one tile run as one, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

import bitstream
from icmcodec.coding.transforms import TransformCodec, padded_size
from icmcodec.exact import ACT_FRAC
from icmcodec.layers.transforms import hyper_analysis
from icmcodec.methods.base import AdapterBinding, Codec, Encoded
from icmcodec.methods.prompt_icm.model import (Analysis, InformationSelector, PromptIcmConfig, Synthesis, build_extractor,
                                               load_extractor)
from icmcodec.tasks import tiled
from icmcodec.tiling import run_tiled

TOP_QUALITY = 4.0


@dataclass(frozen=True)
class FeatureTiling:
    """Tile sizes (what a tile owns) and halos of Prompt-ICM's networks. Halos cover
    each network's reach, measured by back-propagating one output of the shipped
    picm-lite0 and its semseg set: the selector's map reads 184 pixels around
    (extractor stages 1-3), g_a 12 feature units, g_s 11 latents (with its z). The task
    decoder's stages reach the whole tile, so it gets a wide context instead (as a
    clean task network does: :mod:`icmcodec.tasks.tiled`)."""

    extractor: int = 512  # pixels (peak memory at 3840x2160: 1.2 GB with 512, 1.5 GB with 1024)
    extractor_halo: int = 192
    analysis: int = 256  # feature units (1024 pixels)
    analysis_halo: int = 16
    synthesis: int = 64  # latents (1024 pixels)
    synthesis_halo: int = 16
    task: int = 512  # pixels
    task_halo: int = 192
    task_whole: int = tiled.WHOLE  # pictures up to this a side run the task decoder whole


def relative(m: torch.Tensor, gamma: torch.Tensor | None = None) -> torch.Tensor:
    """An importance map as *relative* importance: divided by its mean over the picture
    (per picture), so a task's map only redistributes the bits and the quality alone sets
    how many there are. ``gamma``: a selector's learned contrast at the quality (the map
    is raised to it first; see :class:`~.model.InformationSelector`)."""
    if gamma is not None:
        m = m.clamp(min=1e-6) ** gamma
    return m / m.mean((-2, -1), keepdim=True).clamp(min=1e-6)


def steer(m_rel: torch.Tensor, quality) -> torch.Tensor:
    """The map the codec is steered by at a quality: ``clip(m_rel * 2**((q - 4) / 2), 0, 1)``
    (``quality`` a number or a tensor broadcasting against the map), so the mean map goes
    from 1/4 at quality 0 to 1 (every important position at the top lambda) at 4."""
    q = torch.as_tensor(quality, dtype=m_rel.dtype, device=m_rel.device)
    return (m_rel * torch.exp2((q - TOP_QUALITY) / 2)).clamp(0, 1)


def feature_view(f: torch.Tensor, resize_short: int, crop: int, stride: int = 4) -> torch.Tensor:
    """A global task's input view (short side to ``resize_short``, centre ``crop``) taken
    on a feature map at ``stride``: what the task network would have seen of the picture."""
    h, w = f.shape[-2:]
    s = resize_short / stride / min(h, w)
    c = crop // stride
    nh, nw = max(c, round(h * s)), max(c, round(w * s))
    f = F.interpolate(f, size=(nh, nw), mode="bilinear", align_corners=False, antialias=s < 1)
    t, left = (nh - c) // 2, (nw - c) // 2
    return f[..., t:t + c, left:left + c]


class Analysed:
    """The quality-independent part of an encode: the feature and the map (``m``: the
    relative map as the selector drew it; ``raw`` and ``gamma``: the map in [0, 1] and the
    selector's contrast, for a selector that sharpens or flattens its map per quality)."""

    def __init__(self, coded_size, f: torch.Tensor, m: torch.Tensor, raw: torch.Tensor | None = None, gamma=None):
        self.coded_size, self.f, self.m, self.raw, self.gamma = coded_size, f, m, raw, gamma

    def at(self, quality: float) -> torch.Tensor:
        """The relative map the codec is steered by at ``quality`` (before ``steer``)."""
        if self.gamma is None:
            return self.m
        return relative(self.raw, self.gamma(quality))


class PromptIcmAdapter:
    """A task's adapter, loaded: selector, prompts and head on the task network."""

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, codec: "PromptIcmCodec",
                 tasknet):
        from icmcodec.methods.prompt_icm.model import TaskDecoder

        self.config, self.hash = config, model_hash
        self.task = config["task"]
        self.base_hash = bytes.fromhex(config["base_hash"])
        self.tasknet_hash = bytes.fromhex(config["tasknet_hash"])
        if tasknet is None or tasknet.hash != self.tasknet_hash:
            raise ValueError(f"adapter {config.get('name')} runs task network {config['tasknet_hash'][:12]}, "
                             "which was not given")
        self.tasknet = tasknet
        self.spec, self.labels = self.tasknet.spec, self.tasknet.labels
        # a set trained with a constant map (the ablation without generated prompts) has no selector
        self.uniform = config.get("uniform", False)
        self.selector = InformationSelector(codec.extractor.channels[:codec.arch.selector_stages],
                                            config.get("selector_width", 32), contrast=config.get("contrast", False))
        self.decoder = TaskDecoder(self.tasknet.net, prompts=config.get("prompts", True),
                                   ratio=config.get("prompt_ratio", 4), finetune=config.get("finetune", False))
        tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
        sel = {k[len("selector."):]: v for k, v in tensors.items() if k.startswith("selector.")}
        dec = {k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")}
        try:
            if not self.uniform:
                self.selector.load_state_dict(sel, strict=True)
            own = self.decoder.state_dict()
            missing = [k for k in own if (self.decoder.finetune or not k.startswith("staged.")) and k not in dec]
            extra = [k for k in dec if k not in own]
            if missing or extra:
                raise RuntimeError(f"missing {missing[:3]}, unexpected {extra[:3]}")
            self.decoder.load_state_dict({**own, **dec}, strict=True)
        except RuntimeError as e:
            raise ValueError(f"adapter does not fit its base: {' '.join(str(e).split())[:300]}") from None
        self.selector.eval().to(codec.device)
        self.decoder.eval().to(codec.device)

    @torch.no_grad()
    def finish(self, f_hat: torch.Tensor, coded_size: tuple[int, int], size: tuple[int, int],
               tiling: FeatureTiling = FeatureTiling()) -> np.ndarray:
        """Decoded feature (1 x C x h x w) -> the task output for a picture of ``size``
        (a dense task on a picture over one tile: in tiles, see the module docstring)."""
        if self.spec.kind == "global":
            inp = self.tasknet.config["input"]
            f_hat = f_hat[..., :-(-size[0] // 4), :-(-size[1] // 4)]  # the picture's own part, padding cut off
            logits = self.decoder(feature_view(f_hat, inp["resize_short"], inp["crop"]), (inp["crop"],) * 2)[0]
            return self.spec.postprocess(logits.float().cpu().numpy())
        if max(coded_size) <= tiling.task_whole:
            logits = self.decoder(f_hat, coded_size)[0, :, :size[0], :size[1]]
            return self.spec.postprocess(logits.float().cpu().numpy())

        def logits_of(y0, y1, x0, x1):  # a pixel span on the 32-pixel grid: its feature part
            return self.decoder(f_hat[..., y0 // 4:y1 // 4, x0 // 4:x1 // 4], (y1 - y0, x1 - x0))[0]

        return tiled.predict_tiled(logits_of, size, coded_size, self.spec.postprocess, tile=tiling.task,
                                   halo=tiling.task_halo)

    def importance(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The compression prompt: the selector's map (or the constant map it was trained with)."""
        if self.uniform:
            return torch.ones_like(feats[0][:, :1])
        return self.selector(feats)

    def contrast(self):
        """The selector's per-quality contrast (``gamma(q)``), or None for a plain map."""
        if self.uniform or self.selector.contrast is None:
            return None
        return self.selector.gamma

    def write(self, output: np.ndarray) -> dict[str, bytes]:
        """The output files; a JSON output names the adapter and its task network."""
        from icmcodec.tasks.writers import with_sources

        return with_sources(self.spec.write(output, self.labels), {
            "adapter": {"name": self.config.get("name", ""), "hash": self.hash.hex()},
            "task_network": {"name": self.tasknet.name, "hash": self.tasknet.hash.hex()}})


class PromptIcmCodec(AdapterBinding, TransformCodec, Codec):
    """The feature codec with its extractor, and a task's adapter when bound: its SFT
    transforms + hyperprior(factorized z, Gaussian-conditional y)."""

    method = "prompt-icm"
    produces = "features"
    config_cls = PromptIcmConfig
    encoded = Encoded

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu", tiling=None):
        super().__init__(config, {k: v for k, v in state.items() if not k.startswith("extractor.")}, model_hash,
                         device, tiling)
        self.extractor = build_extractor(self.arch)
        ex = {k[len("extractor."):]: torch.from_numpy(np.asarray(v, dtype=np.float32))
              for k, v in state.items() if k.startswith("extractor.")}
        try:
            # the file stores what the extractor runs (the segments up to the selector's last stage)
            if any(k not in self.extractor.state_dict() for k in ex):
                raise RuntimeError("unexpected extractor weights")
            load_extractor(self.extractor, ex)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"model file does not match its config: {' '.join(str(e).split())[:300]}") from None
        self.extractor.eval().to(self.device)
        mean, std = _input_stats(self.arch.backbone)
        self.in_mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.in_std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    feature_tiling = FeatureTiling()

    def _float_transforms(self):
        return Analysis(self.arch), Synthesis(self.arch), hyper_analysis(self.arch)

    @property
    def quality_range(self) -> tuple[float, float]:
        # the map's mean goes from 1/16 at -4 to 1 at 4 (steer); sets from before --qualities trained at 0..4
        return (-TOP_QUALITY, TOP_QUALITY)

    @property
    def default_quality(self) -> float:
        return float(self.config.get("default_quality", 1.0))

    # ---- adapters -------------------------------------------------------------------
    def load_adapter(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes,
                     tasknet=None) -> PromptIcmAdapter:
        if config.get("method") != self.method:
            raise ValueError(f"{config.get('name')} is a {config.get('method')} adapter, not a prompt-icm one")
        self.check_base(config)
        return PromptIcmAdapter(config, state, model_hash, self, tasknet)

    # ---- encode ---------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, rgb: np.ndarray, importance: np.ndarray | None = None) -> Analysed:
        """Feature and importance map of a picture. ``importance`` (at the feature's
        resolution, values in [0, 1]) replaces the selector's map: a manual compression
        prompt (the paper's ablation, and the codec's own tests)."""
        h, w = rgb.shape[:2]
        ph, pw = padded_size(h, w)
        if importance is None and self.adapter is None:
            raise ValueError("prompt-icm needs a task's adapter (or a manual importance map) to encode")
        c, t = self.arch.C, self.feature_tiling
        fm = np.empty((c + 1, ph // 4, pw // 4), dtype=np.float32)  # f / scale, then the raw map

        def tile(y0, y1, x0, x1):
            # edge replication past the picture: the padding the decoder crops away again
            x = torch.from_numpy(np.ascontiguousarray(tiled.padded_tile(rgb, y0, y1, x0, x1))).permute(2, 0, 1)[None]
            x = x.float().div(255).to(self.device)
            feats = self.extractor.upto((x - self.in_mean) / self.in_std, self.arch.selector_stages)
            m = self.adapter.importance(feats) if importance is None else feats[0][:, :1] * 0
            return torch.cat([feats[0] / self.arch.feature_scale, m], 1)[0].cpu().numpy()

        run_tiled(tile, ph, pw, scale=Fraction(1, 4), tile=t.extractor, halo=t.extractor_halo, align=32, out=fm)
        f = torch.from_numpy(fm)[None, :c].to(self.device)
        gamma = None
        if importance is not None:
            m = torch.as_tensor(np.asarray(importance, np.float32), device=self.device).reshape(1, 1, ph // 4, pw // 4)
        else:
            m, gamma = torch.from_numpy(fm)[None, c:].to(self.device), self.adapter.contrast()
        m = m.clamp(0, 1)
        return Analysed((ph, pw), f, relative(m), m, gamma)

    @torch.no_grad()
    def code(self, an: Analysed, quality: float) -> Encoded:
        m_q = steer(an.at(quality), quality)
        hf, wf = an.f.shape[-2:]
        y = np.empty((self.arch.M, hf // 4, wf // 4), dtype=np.float32)

        def g_a(y0, y1, x0, x1):
            return self.g_a(an.f[..., y0:y1, x0:x1], m_q[..., y0:y1, x0:x1])[0].cpu().numpy()

        t = self.feature_tiling
        run_tiled(g_a, hf, wf, scale=Fraction(1, 4), tile=t.analysis, halo=t.analysis_halo, align=4, out=y)
        z = self._hyper_analysis(y)
        return super().code(self._finish_analysis(an.coded_size, y, z), quality)

    def bits_map(self, an: Analysed, quality: float) -> np.ndarray:
        """Bits the latent y spends at each of its positions (h/16 x w/16 of the coded
        picture), from the exact tables: where the importance map put the rate."""
        enc = self.code(an, quality)
        z_sym = enc.symbols["z"]
        idx, _, _ = self._params(z_sym, quality)
        return self.y_coder.bits(enc.symbols["y"], idx).sum(0)

    def analyse_batch(self, rgbs):
        return [self.analyse(rgb) for rgb in rgbs]

    # ---- decode ---------------------------------------------------------------------
    @torch.no_grad()
    def decode_features(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float) -> torch.Tensor:
        """Chunks -> f_hat (1 x C x h/4 x w/4, the extractor's units; g_s in tiles)."""
        z_sym, y_sym, mean_g_fp, _ = self.decode_symbols(z_bytes, y_bytes, coded_size, quality)
        y_hat = (y_sym + mean_g_fp / (1 << ACT_FRAC)).astype(np.float32)
        del y_sym, mean_g_fp
        z_hat = self.hyperprior.z.dequantize(z_sym)
        _, hy, wy = y_hat.shape
        f_hat = np.empty((self.arch.C, 4 * hy, 4 * wy), dtype=np.float32)

        def g_s(y0, y1, x0, x1):  # spans on a 4-latent grid: z's part is exact
            yt = torch.from_numpy(y_hat[:, y0:y1, x0:x1])[None].to(self.device)
            zt = torch.from_numpy(z_hat[:, y0 // 4:y1 // 4, x0 // 4:x1 // 4])[None].to(self.device)
            return torch.nan_to_num(self.g_s(yt, zt))[0].cpu().numpy()

        t = self.feature_tiling
        run_tiled(g_s, hy, wy, scale=4, tile=t.synthesis, halo=t.synthesis_halo, align=4, out=f_hat)
        f_hat *= self.arch.feature_scale
        return torch.from_numpy(f_hat)[None].to(self.device)

    def decode_chunks(self, header: bitstream.Header, chunks: list[bitstream.Chunk]):
        """The task output (``produces = "features"``: the bound set's head finishes it)."""
        z, y = self.payloads(chunks)
        coded = (header.coded_height, header.coded_width)
        f_hat = self.decode_features(z, y, coded, header.quality)
        if self.adapter is None:
            return f_hat
        return self.adapter.finish(f_hat, coded, (header.height, header.width), self.feature_tiling)


def _input_stats(name: str):
    from icmcodec.tasks.backbone import input_stats

    return input_stats(name)
