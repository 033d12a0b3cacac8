"""The base codec at coding time: image <-> (header fields, chunks) with real bytes.

``HyperpriorCodec`` is built from an *exported* state (see :mod:`icmcodec.coding.export`):
float weights for the transforms, integer weights for the exact hyper synthesis,
baked integer tables for z and y, integer log2 gains and medians. Coding follows
:mod:`icmcodec.exact`: every number the range coder sees comes from integers, so a
file encoded anywhere decodes to the same symbols anywhere.

It is composed of the shared parts in :mod:`icmcodec.coding`: the conv + GDN transforms
run in tiles (:class:`~icmcodec.coding.transforms.TransformCodec`) and a hyperprior
(factorized z, exact h_s) with a Gaussian-conditional y.
"""
from __future__ import annotations

from icmcodec.coding.transforms import PAD, Analysis, TransformCodec, Tiling, padded_size  # noqa: F401
from icmcodec.layers.transforms import HyperpriorConfig
from icmcodec.methods.base import Codec, Encoded


class ModelMismatchError(ValueError):
    """A file or adapter was made for another model than the one loaded."""


class HyperpriorCodec(TransformCodec, Codec):
    """Inference-time gained mean-scale hyperprior with an exact entropy-parameter path:
    the hyperprior's transforms + hyperprior(factorized z, Gaussian-conditional y)."""

    method = "hyperprior"
    produces = "picture"
    config_cls = HyperpriorConfig
    encoded = Encoded
