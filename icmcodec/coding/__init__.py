"""Exact coding components that methods compose (a layer below :mod:`icmcodec.methods`).

Each owns its encode and decode paths (and, where cheap, the exact bits of its symbols);
a method's codec composes them instead of subclassing another method:

| component | what |
|---|---|
| :class:`FactorizedZ` | z symbols <-> HYPER bytes: one table per channel around integer medians |
| :class:`GaussianConditional` | y symbols <-> LATENT bytes under exact (mean, log2 scale) and the quality's gains |
| :class:`Hyperprior` | h_a in tiles, factorized z, the exact h_s (:class:`ExactHyperSynthesis`) in tiles, and a y codec |
| :class:`Checkerboard` | one channel group in two exact passes (anchors, then the rest seeing them) |
| :class:`ChannelSlices` | a y codec: uneven channel slices, each a checkerboard, with the channel context (:class:`ExactContext`) |
| :class:`TransformCodec` | the base of codecs whose float transforms run in tiles around a hyperprior |

Their training-time side lives here too, so a method that builds on them imports no other
method: ``hyperprior_net`` (the trainable gained hyperprior, compressai's GDN and
factorized prior), ``context_config`` / ``context_net`` (the channel-slice and checkerboard
context networks), ``export`` (a trained network -> tables and integer weights -> a model
folder, for every method whose file is the hyperprior's plus its own tensors) and ``tiny``
(the seeded tiny network every method's test model starts from).

May import :mod:`bitstream`, :mod:`icmcodec.entropy`, :mod:`icmcodec.exact`,
:mod:`icmcodec.tiling`, :mod:`icmcodec.layers`, :mod:`icmcodec.zoo` (model folders), torch and
numpy; never
:mod:`icmcodec.methods`, the pipeline, the registry, the API, the CLI or the benchmarks.
"""
from icmcodec.coding.checkerboard import Checkerboard, anchor_mask, anchors
from icmcodec.coding.factorized import Z_SYMBOL_LIMIT, FactorizedZ
from icmcodec.coding.gaussian import GaussianConditional
from icmcodec.coding.hyperprior import (CACHE_HYPER, ExactHyperSynthesis, HyperOutput, Hyperprior,
                                        quantize_hyper_synthesis)
from icmcodec.coding.slices import ChannelSlices, ExactContext, quantize_context, slice_bounds
from icmcodec.coding.transforms import PAD, Analysis, Tiling, TransformCodec, padded_size

__all__ = [
    "Checkerboard", "anchor_mask", "anchors", "Z_SYMBOL_LIMIT", "FactorizedZ", "GaussianConditional", "CACHE_HYPER",
    "ExactHyperSynthesis", "HyperOutput", "Hyperprior", "quantize_hyper_synthesis", "ChannelSlices", "ExactContext",
    "quantize_context", "slice_bounds", "PAD", "Analysis", "Tiling", "TransformCodec", "padded_size",
]
