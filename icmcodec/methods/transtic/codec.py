"""TransTIC at coding time: TIC's chunks, with a task's prompt set on both sides.

The stream is the hyperprior's exactly (one HYPER, one LATENT chunk; the exact h_s
computes every entropy parameter), because prompts live only in the float transforms:
the encoder's instance prompts change which latent g_a produces, the decoder's task
prompts change what g_s makes of it. So a TransTIC file decodes to the same symbols on
every machine like every icm file, and without a prompt set (``--task recon``) the
codec is plain TIC.

A prompt set is the method's adapter: a model folder of kind ``adapter`` (``config.json`` names its
method, task, base model hash and task network hash; ``model.safetensors`` holds the
generator and the task prompts). :meth:`TransticCodec.bound` returns the codec with one
set on: a shallow copy sharing every weight, so a loaded codec is never switched
globally. The file header's ``adapter_hash`` names the set; the set names its task
network.

Tiles: Swin blocks read up to ``depth`` windows to each side and must see the
picture's own window grid (:class:`icmcodec.tiling.Geometry` ``window``); instance
prompts are computed from each input tile by the generator and cut to the span each
block receives. Tiles read the stack's receptive field plus the generator's (a test
checks tiled against whole).
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn

from icmcodec.coding.tic import TIC_TILING, TicCodec
from icmcodec.layers.tic import TicConfig
from icmcodec.layers.swin import SwinBlock, TaskPrompts
from icmcodec.methods.base import AdapterBinding, Codec, Encoded
from icmcodec.methods.transtic.transforms import PromptGenerator, prompted_scales

TRANSTIC_TILING = TIC_TILING  # the base's (the prompt generator's 64-pixel margin included)


class TransticAdapter:
    """A task's prompt set, loaded: the generator and the task prompts, with identity."""

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, arch: TicConfig,
                 g_a, g_s, device):
        self.config, self.hash = config, model_hash
        self.task = config["task"]
        self.base_hash = bytes.fromhex(config["base_hash"])
        self.tasknet_hash = bytes.fromhex(config["tasknet_hash"]) if config.get("tasknet_hash") else None
        self.encoder, self.decoder = config.get("encoder", True), config.get("decoder", True)
        # a set may prompt one side only (the ablations): the other part is absent
        gen = PromptGenerator(arch, prompted_scales(g_a)) if self.encoder else None
        tp = (TaskPrompts([(arch.N, len(b.layers)) for b in g_s if isinstance(b, SwinBlock)],
                          tokens=arch.prompt_tokens) if self.decoder else None)
        mods = nn.ModuleDict({k: v for k, v in (("generator", gen), ("task_prompts", tp)) if v is not None})
        tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
        try:
            mods.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise ValueError(f"adapter does not fit its base: {' '.join(str(e).split())[:300]}") from None
        mods.eval().to(device)
        self.generator, self.task_prompts = gen, tp


class _Prompted(nn.Module):
    """A Swin block inside a tiled run, fed the prompts for the span it receives."""

    wants_span = True

    def __init__(self, block: SwinBlock, prompts_for):
        super().__init__()
        self.block, self.prompts_for = block, prompts_for

    def tiling_geometry(self):
        return self.block.tiling_geometry()

    def forward(self, x, span_y, span_x):
        return self.block(x, self.prompts_for(span_y, span_x))


class TransticCodec(AdapterBinding, TicCodec, Codec):
    """TIC (hybrid or paper layout) with an optional prompt set (:meth:`bound`): TIC's
    transforms in tiles + hyperprior(factorized z, Gaussian-conditional y)."""

    method = "transtic"
    produces = "picture"
    encoded = Encoded

    def load_adapter(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes,
                     tasknet=None) -> TransticAdapter:
        self.check_base(config)
        return TransticAdapter(config, state, model_hash, self.arch, self.g_a, self.g_s, self.device)

    # ---- prompts into the transforms --------------------------------------------------
    def _enc_prompts(self):
        ps = self.adapter
        return ps.generator if ps is not None else None

    def _dec_prompts(self):
        ps = self.adapter
        return ps.task_prompts.per_block() if ps is not None and ps.task_prompts is not None else None

    def _analysis_layers(self):
        gen = self._enc_prompts()
        if gen is None:
            return list(self.g_a), None
        maps, origin = {}, {}
        blocks = [i for i, m in enumerate(self.g_a) if isinstance(m, SwinBlock)][:len(gen.scales)]
        scales = dict(zip(blocks, gen.scales))

        def on_tile(x, y0, x0):  # the generator on this input tile; cut per block below
            maps["tile"] = gen(x)
            origin["yx"] = (y0, x0)

        def prompts_for(k, i):
            s = scales[i]

            def cut(span_y, span_x):
                y0, x0 = origin["yx"]
                oy, ox = y0 // s, x0 // s
                (a, b), (c, d) = span_y, span_x  # the block's input span, at half its resolution
                return [m[..., a // 2 - oy:b // 2 - oy, c // 2 - ox:d // 2 - ox] for m in maps["tile"][k]]
            return cut

        layers = [(_Prompted(m, prompts_for(blocks.index(i), i)) if i in scales else m) for i, m in enumerate(self.g_a)]
        return layers, on_tile

    def _synthesis_layers(self):
        per_block = self._dec_prompts()
        if per_block is None:
            return list(self.g_s)
        out, k = [], 0
        for m in self.g_s:
            if isinstance(m, SwinBlock):
                out.append(_Prompted(m, (lambda p: lambda span_y, span_x: p)(per_block[k])))
                k += 1
            else:
                out.append(m)
        return out

    def _run_g_a(self, x: torch.Tensor) -> torch.Tensor:
        gen = self._enc_prompts()
        return self.g_a(x, gen(x) if gen is not None else None)
