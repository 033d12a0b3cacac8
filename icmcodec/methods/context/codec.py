"""The context model at coding time: the hyperprior's transforms and hyper path, then
each channel slice in two checkerboard passes, all in one range-coded LATENT stream.

Composed of the shared parts in :mod:`icmcodec.coding`: the conv + GDN transforms in
tiles (:class:`~icmcodec.coding.transforms.TransformCodec`) and a hyperprior whose y
codec is :class:`~icmcodec.coding.slices.ChannelSlices` (uneven channel slices, each a
:class:`~icmcodec.coding.checkerboard.Checkerboard`, with the channel context; the
stream's order is in :mod:`icmcodec.coding.slices`). Every entropy parameter comes from
the exact integer twins (h_s and the context nets) and already-decoded symbols, so
encoder and decoder derive the same ones on every machine.
"""
from __future__ import annotations

import numpy as np

from icmcodec.coding.slices import ChannelSlices
from icmcodec.coding.transforms import TransformCodec
from icmcodec.methods.base import Codec, Encoded
from icmcodec.coding.context_config import ContextConfig


class ContextCodec(TransformCodec, Codec):
    """The hyperprior's transforms + hyperprior(factorized z, channel slices of checkerboards)."""

    method = "context"
    produces = "picture"
    config_cls = ContextConfig
    encoded = Encoded

    def _y_codec(self, state: dict[str, np.ndarray]) -> ChannelSlices:
        return ChannelSlices.from_state(state, self.arch.slice_bounds(), self.arch.hidden, self.device)

    @property
    def ctx(self):
        """The exact context nets (:class:`~icmcodec.coding.slices.ExactContext`)."""
        return self.hyperprior.y.ctx

    def decode_latents(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float):
        """(z symbols, y symbols, y_hat un-gained fixed point, log2 gains)."""
        return self.decode_symbols(z_bytes, y_bytes, coded_size, quality)
