"""The gained mean-scale hyperprior: icm's first codec for people (``recon``) and the
"human codec" anchor of the ICM papers for machine tasks.

| module | what |
|---|---|
| ``transforms`` | its config, the analysis/synthesis layouts, inference GDN |
| ``model`` | the trainable network (compressai's GDN and factorized prior) |
| ``exact`` | the integer twin of the hyper synthesis (a :class:`~icmcodec.exact.Plan`) |
| ``export`` | trained checkpoint -> shipped model file (tables, integer weights) |
| ``codec`` | coding time: picture <-> chunks, through the tiled executor |
| ``train`` | its training entry (the shared loop of :mod:`icmcodec.train`) |
"""
