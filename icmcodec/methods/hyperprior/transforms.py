"""The hyperprior's transforms and config: they live in :mod:`icmcodec.layers.transforms`
(every method builds on them); re-exported here under their old names."""
from icmcodec.layers.transforms import (FixedGDN, GDNFactory, HyperpriorConfig, build_transforms, conv, deconv,  # noqa: F401
                                        hyper_analysis)
