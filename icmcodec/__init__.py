"""icm: an image codec for machines.

Layers (see README): ``bitstream`` (the container, no torch) <- ``icmcodec.entropy``
(constriction bridge) <- ``icmcodec.exact`` (integer entropy-parameter path) <-
``icmcodec.codec`` / ``icmcodec.methods`` (networks) <- ``icmcodec.pipeline`` (the API
the CLI and benchmarks use). Importing this package imports nothing heavy.

The Python API (:mod:`icmcodec.api`): ``icmcodec.encode``, ``icmcodec.decode`` and
``icmcodec.analyze``; ``icmcodec.UsageError`` for requests this installation cannot serve.
"""
__version__ = "0.2.0"
__all__ = ["encode", "decode", "analyze", "UsageError", "__version__"]


def __getattr__(name: str):
    # the API loads on first use, so ``import icmcodec`` stays instant (no torch)
    if name in ("encode", "decode", "analyze"):
        from icmcodec import api

        return getattr(api, name)
    if name == "UsageError":
        from icmcodec.pipeline import UsageError

        return UsageError
    raise AttributeError(f"module 'icmcodec' has no attribute {name!r}")
