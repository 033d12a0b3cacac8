"""TIC at coding time: the tiled transform codec with TIC's float transforms.

The shared base of the methods built on a TIC model (TransTIC's prompts, MPA's paths):
:class:`TicCodec` loads a TIC model file's ``float.*`` tensors into TIC's g_a / g_s
(:mod:`icmcodec.layers.tic`, with the fixed GDN) and h_a, and codes like every
:class:`~icmcodec.coding.transforms.TransformCodec`: one HYPER and one LATENT chunk.
"""
from __future__ import annotations

from icmcodec.coding.transforms import Tiling, TransformCodec
from icmcodec.layers.tic import TicConfig, build_tic_transforms
from icmcodec.layers.transforms import FixedGDN, hyper_analysis

# Each tile reads the receptive field of its layers (Swin blocks included: their windows
# stay on the picture's grid); TransTIC's prompt generator, a conv net run on the input
# tile, reads about 31 pixels further, so tiles get 64 more, and start on a 64-pixel grid
# (a multiple of every prompt map's scale, so a map's cut is the picture's). A tile of 512
# reads about 1040 pixels square: at 3840x2160 the encode peaks at 1.3 GB with it and at
# 1.5 GB with 640 (benchmarks/hostile.py). Every TIC method tiles the same way, so the
# base's latents are the same whichever method codes them.
TIC_TILING = Tiling(analysis=512, analysis_margin=64, analysis_align=64)


class TicCodec(TransformCodec):
    """Mixin: TIC's transforms in tiles around the hyperprior (``class X(TicCodec, Codec)``)."""

    config_cls = TicConfig
    default_tiling = TIC_TILING

    def _float_transforms(self):
        g_a, g_s = build_tic_transforms(self.arch, gdn=lambda c, inverse: FixedGDN(c, inverse))
        return g_a, g_s, hyper_analysis(self.arch)
