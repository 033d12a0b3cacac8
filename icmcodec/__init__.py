"""icm: an image codec for machines.

Layers (see README): ``bitstream`` (the container, no torch) <- ``icmcodec.entropy``
(constriction bridge) <- ``icmcodec.exact`` (integer entropy-parameter path) <-
``icmcodec.codec`` / ``icmcodec.methods`` (networks) <- ``icmcodec.pipeline`` (the API
the CLI and benchmarks use). Importing this package imports nothing heavy.
"""
__version__ = "0.1.0"
