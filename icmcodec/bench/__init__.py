"""Benchmarks: anchor codecs (``anchors``), measurements (``measure``) and the
rate-distortion runner (``rd``; ``python benchmarks/rd.py`` or ``python -m icmcodec.bench.rd``)."""
