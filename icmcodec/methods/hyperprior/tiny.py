"""A tiny, seeded, untrained hyperprior for tests and examples (timm's ``test_*`` habit).

Every weight is drawn from numpy's PCG64 generator, so the model, and therefore the
bytes it encodes, depend on nothing but the seed (not on torch's RNG or version).
``write_tiny_model(folder)`` saves it as a regular model folder (the method spec's
``tiny``). The tiny network itself (:mod:`icmcodec.coding.tiny`) is where every
method's tiny model starts.
"""
from __future__ import annotations

from pathlib import Path

from icmcodec.coding.export import export_state, make_config, serialize
from icmcodec.coding.tiny import TINY, tiny_float_model  # noqa: F401  (the tests' tiny network)
from icmcodec.zoo import write_model


def tiny_model_bytes(seed: int = 0) -> tuple[dict, bytes]:
    config = make_config(f"test-tiny-{seed}", TINY, default=False)
    return config, serialize(export_state(tiny_float_model(seed)))


def write_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    write_model(folder, *tiny_model_bytes(seed))
    return Path(folder)


def tiny_codec(seed: int = 0, device: str = "cpu"):
    from safetensors.numpy import load

    from icmcodec.methods.hyperprior.codec import HyperpriorCodec
    from icmcodec.zoo import model_hash

    config, blob = tiny_model_bytes(seed)
    return HyperpriorCodec(config, load(blob), model_hash(blob), device)
